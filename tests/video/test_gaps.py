"""The gaps of the video lifecycle (issue 6): a meeting that is in progress when its session is
cancelled, sessions of a calendar that was removed, and the therapist told of every missing link
(zoomus, wrapped, against the Zoom emulator; the mail through core.mail)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.mail import MailMessage
from core.mirror import remove_connection
from core.store import OutboxEvent, Store
from core.video.notice import PURPOSE, SUBJECT, tell_link_missing
from core.video.service import IN_PROGRESS_RETRY, VIDEO_LINK_MISSING, reconcile_session, sweep
from sandbox.zoom import Fault, RunningZoom, Settings, ZoomState, run_zoom_emulator
from tests.video.world import CLIENT_NAME, VideoWorld, soon

SENDER = "Appointments <appointments@practice.test>"


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        yield emu


@pytest.fixture
def world(store: Store, zoom: RunningZoom, tmp_path: Path) -> VideoWorld:
    w = VideoWorld(store, zoom, tmp_path)
    w.connect()
    return w


def _missing_reasons(store: Store) -> list[str]:
    with store.session() as session:
        payloads = session.scalars(select(OutboxEvent.payload).where(OutboxEvent.kind == VIDEO_LINK_MISSING))
        return [str(p["reason"]) for p in payloads]


def _tell_all(store: Store, now: datetime | None = None) -> int:
    """Hand every video.link_missing event to the notice handler, as the job runner does."""
    with store.session() as session:
        payloads = list(session.scalars(select(OutboxEvent.payload).where(OutboxEvent.kind == VIDEO_LINK_MISSING)))
    told = 0
    for payload in payloads:
        with store.session() as session:
            told += tell_link_missing(store, session, dict(payload), sender=SENDER, now=now)
    return told


def _mails(store: Store) -> list[MailMessage]:
    with store.session() as session:
        return list(session.scalars(select(MailMessage).where(MailMessage.purpose == PURPOSE)))


def test_a_meeting_in_progress_is_not_cut_and_is_deleted_once_it_has_ended(world: VideoWorld) -> None:
    start = soon()
    world.put("evt-1", start)
    world.sync()
    sid = world.assign("evt-1", start)
    [meeting] = world.meetings()
    world.zoom.state.set_status(meeting.id, "started")  # the host opened the room early

    now = datetime.now(UTC)
    world.cancel("evt-1", start)
    world.sync(now)
    # Zoom answers 3002: the call goes on, the meeting stays, and the delete is tried again later.
    assert world.outcomes[-1] == {sid: "in_progress"}
    assert [m.id for m in world.meetings()] == [meeting.id]
    video = world.video(sid)
    assert video is not None and "in progress" in (video.reason or "")
    assert sweep(world.store, world.factory, world.config, now=now + timedelta(minutes=1)) == {}

    world.zoom.state.set_status(meeting.id, "waiting")  # the call has ended
    later = now + IN_PROGRESS_RETRY + timedelta(seconds=1)
    assert sweep(world.store, world.factory, world.config, now=later) == {"deleted": 1}
    assert world.meetings() == []
    video = world.video(sid)
    assert video is not None and video.status == "none"


def test_the_meetings_of_a_removed_calendar_are_deleted_and_none_are_made_for_it(world: VideoWorld) -> None:
    first, second = soon(days=2), soon(days=3)
    world.put("evt-1", first)
    world.put("evt-2", second)
    world.put("evt-3", soon(days=20))  # outside the window: no meeting yet
    world.sync()
    sids = [world.assign("evt-1", first), world.assign("evt-2", second)]
    far = world.assign("evt-3", soon(days=20))
    assert len(world.meetings()) == 2

    assert remove_connection(world.store, world.therapist, world.connection)
    now = datetime.now(UTC)
    assert sweep(world.store, world.factory, world.config, now=now) == {"deleted": 2}
    assert world.meetings() == []
    for sid in sids:
        video = world.video(sid)
        assert video is not None and video.status == "none" and video.join_url is None
    # The far session enters the window later: nothing is made for a calendar that is gone.
    assert sweep(world.store, world.factory, world.config, now=now + timedelta(days=10)) == {}
    assert reconcile_session(world.store, far, world.factory, world.config, now + timedelta(days=10)) == "cleared"
    assert world.meetings() == []


def test_no_zoom_connection_tells_the_therapist_once(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    world = VideoWorld(store, zoom, tmp_path)  # never connected
    start = soon()
    world.put("evt-1", start)
    world.sync()
    sid = world.assign("evt-1", start)
    assert _missing_reasons(store) == ["no_connection"]
    # The hourly recheck finds the same gap: no new event, no new mail.
    now = datetime.now(UTC)
    assert sweep(store, world.factory, world.config, now=now + timedelta(hours=2)) == {"no_connection": 1}
    assert _missing_reasons(store) == ["no_connection"]
    assert _tell_all(store) == 1 and _tell_all(store) == 0  # a redelivery queues nothing
    [mail] = _mails(store)
    assert mail.session_id == sid and mail.therapist_id == world.therapist
    assert mail.expires_at == start  # useless once the session has begun


def test_zoom_refusing_tells_the_therapist_and_names_nobody(world: VideoWorld) -> None:
    world.zoom.state.inject_fault(
        Fault(status=400, code=300, message="Invalid field", method="POST", path_prefix="/v2/users")
    )
    start = soon()
    world.put("evt-1", start)
    world.sync()
    world.assign("evt-1", start)
    assert _missing_reasons(world.store) == ["gave_up"]
    assert _tell_all(world.store) == 1
    # What was queued is sealed (core.mail); what is readable (subject, purpose) names nobody.
    [mail] = _mails(world.store)
    assert mail.status == "pending" and mail.purpose == PURPOSE
    assert SUBJECT == "A session has no video link" and CLIENT_NAME not in SUBJECT


def test_a_budget_that_comes_back_only_after_the_session_began_is_told(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    world = VideoWorld(store, zoom, tmp_path, daily_budget=1)
    world.connect()
    start = soon(days=2, hour=20)
    # Today's budget is spent on a first session; the second starts before 00:00 UTC comes.
    now = start - timedelta(hours=5)
    world.put("evt-1", start - timedelta(hours=2))
    world.put("evt-2", start)
    world.sync(now)
    world.assign("evt-1", start - timedelta(hours=2), now)
    sid = world.assign("evt-2", start, now)
    video = world.video(sid)
    assert video is not None and video.status == "deferred"
    assert _missing_reasons(store) == ["budget"]
    assert _tell_all(store, now) == 1


def test_a_deferral_that_ends_before_the_session_tells_nobody(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    world = VideoWorld(store, zoom, tmp_path, daily_budget=1)
    world.connect()
    now = datetime.now(UTC)
    world.put("evt-1", soon(days=3))
    world.put("evt-2", soon(days=4))
    world.sync(now)
    world.assign("evt-1", soon(days=3), now)
    world.assign("evt-2", soon(days=4), now)
    assert _missing_reasons(store) == []  # made after midnight, long before the session
