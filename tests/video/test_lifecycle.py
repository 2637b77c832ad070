"""Online sessions get, keep and lose Zoom meetings exactly as the calendar says (zoomus -> emulator)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.store import Store
from core.video.models import SessionVideo
from core.video.service import get_video_connection, next_utc_midnight, reconcile_session, retry_session, sweep
from sandbox.zoom import Fault, RunningZoom, Settings, ZoomState, run_zoom_emulator
from tests.core.test_privacy_at_rest import _raw_dump
from tests.video.world import CLIENT_NAME, VideoWorld, soon

MEET = "https://meet.google.com/abc-defg-hij"


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        yield emu


@pytest.fixture
def world(store: Store, zoom: RunningZoom, tmp_path: Path) -> VideoWorld:
    w = VideoWorld(store, zoom, tmp_path)
    w.connect()
    return w


def _one_session(world: VideoWorld, start: datetime, uid: str = "evt-1", **fields: object) -> int:
    world.put(uid, start, **fields)  # type: ignore[arg-type]
    world.sync()
    return world.assign(uid, start)


def test_an_online_session_gets_one_private_neutral_meeting_at_the_right_time(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [meeting] = world.meetings()
    assert meeting.start_time == start  # converted to UTC before zoomus appended its "Z"
    assert meeting.duration == 50 and meeting.timezone == "Europe/Madrid"
    assert meeting.topic == "Appointment" and CLIENT_NAME not in meeting.topic + meeting.agenda
    assert meeting.settings["waiting_room"] is True and meeting.settings["join_before_host"] is False
    assert meeting.settings["auto_recording"] == "none" and meeting.password
    video = world.video(sid)
    assert video is not None and video.provider == "zoom" and video.link_status == "ok"
    assert video.join_url == meeting.join_url()
    # The join URL is encrypted at rest.
    assert meeting.join_url().encode() not in _raw_dump(world.store)
    # Delivering the same events again makes no second meeting.
    world.outbox_seen = 0
    world.deliver()
    assert len(world.meetings()) == 1


def test_reschedule_patches_cancel_deletes_restore_recreates(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [first] = world.meetings()
    later = start + timedelta(hours=2)
    world.put("evt-1", later)
    world.sync()
    [moved] = world.meetings()
    assert moved.id == first.id and moved.start_time == later
    world.cancel("evt-1", later)
    world.sync()
    assert world.meetings() == [] and first.id in world.zoom.state.deleted_ids
    video = world.video(sid)
    assert video is not None and video.status == "none" and video.join_url is None
    world.put("evt-1", later)  # restored
    world.sync()
    [again] = world.meetings()
    assert again.id != first.id and again.start_time == later
    assert world.video(sid).join_url == again.join_url()  # type: ignore[union-attr]


def test_switching_to_in_person_deletes_the_meeting_and_back_creates_one(world: VideoWorld) -> None:
    sid = _one_session(world, soon())
    assert len(world.meetings()) == 1
    world.set_modality(sid, "in_person")
    assert world.meetings() == []
    world.set_modality(sid, "online")
    assert len(world.meetings()) == 1


def test_an_event_with_its_own_video_link_gets_no_zoom_meeting(world: VideoWorld) -> None:
    sid = _one_session(world, soon(), conference_url=MEET)
    assert world.meetings() == []
    video = world.video(sid)
    assert video is not None and video.provider == "external" and video.join_url == MEET


def test_a_meet_link_added_later_replaces_our_meeting(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    assert len(world.meetings()) == 1
    world.put("evt-1", start, conference_url=MEET)
    world.sync()
    assert world.meetings() == []
    assert world.video(sid).join_url == MEET  # type: ignore[union-attr]


def test_our_own_link_written_back_into_the_event_is_not_external(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [meeting] = world.meetings()
    world.put("evt-1", start, description=f"Join: {meeting.join_url()}")
    world.sync()
    assert [m.id for m in world.meetings()] == [meeting.id]
    assert world.video(sid).provider == "zoom"  # type: ignore[union-attr]


def test_meetings_are_made_only_inside_the_rolling_window(world: VideoWorld) -> None:
    far = soon(days=30)
    sid = _one_session(world, far)
    assert world.meetings() == []
    assert world.video(sid).status == "later"  # type: ignore[union-attr]
    assert sweep(world.store, world.factory, world.config) == {}
    entering = far - timedelta(days=13)
    assert sweep(world.store, world.factory, world.config, now=entering) == {"created": 1}
    assert len(world.meetings()) == 1


def test_the_daily_budget_defers_the_excess_until_midnight_utc(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    world = VideoWorld(store, zoom, tmp_path, daily_budget=3)
    world.connect()
    now = datetime.now(UTC)
    starts = [soon(days=3) + timedelta(hours=i) for i in range(5)]
    for i, start in enumerate(starts):
        world.put(f"evt-{i}", start)
    world.sync(now)
    for i, start in enumerate(starts):
        world.assign(f"evt-{i}", start, now)
    assert len(world.meetings()) == 3
    deferred = [world.video(s) for s in world.session_ids()]
    waiting = [v for v in deferred if v is not None and v.status == "deferred"]
    assert len(waiting) == 2 and all(v.next_attempt_at == next_utc_midnight(now) for v in waiting)
    # Before midnight the sweep does not touch them; after it, they are made.
    assert sweep(store, world.factory, world.config, now=now + timedelta(seconds=1)).get("created", 0) == 0
    after = next_utc_midnight(now) + timedelta(minutes=1)
    assert sweep(store, world.factory, world.config, now=after) == {"created": 2}
    assert len(world.meetings()) == 5


@pytest.mark.parametrize("headers", [True, False])
def test_zoom_daily_limit_429_defers_to_midnight_with_or_without_headers(world: VideoWorld, headers: bool) -> None:
    world.zoom.state.settings.daily_limit = 0
    world.zoom.state.settings.rate_limit_headers = headers
    now = datetime.now(UTC)
    sid = _one_session(world, soon())
    video = world.video(sid)
    assert video is not None and video.status == "deferred"
    assert video.next_attempt_at == next_utc_midnight(now)
    assert "daily" in (video.reason or "")


def test_per_second_429_is_retried_after_retry_after(world: VideoWorld) -> None:
    world.zoom.state.inject_fault(
        Fault(
            status=429,
            code=429,
            message="slow down",
            method="POST",
            path_prefix="/v2/users",
            headers={"Retry-After": "600"},
        )
    )
    now = datetime.now(UTC)
    start = soon()
    world.put("evt-1", start)
    world.sync(now)
    sid = world.assign("evt-1", start, now)
    video = world.video(sid)
    assert video is not None and video.status == "pending" and world.meetings() == []
    assert video.next_attempt_at is not None and video.next_attempt_at >= now + timedelta(seconds=600)
    # Retry-After counts from Zoom's answer, a moment after ``now`` on a busy machine.
    assert sweep(world.store, world.factory, world.config, now=video.next_attempt_at - timedelta(seconds=1)) == {}
    assert sweep(world.store, world.factory, world.config, now=video.next_attempt_at) == {"created": 1}


def test_failures_retry_with_backoff_then_the_link_is_reported_missing(
    world: VideoWorld, caplog: pytest.LogCaptureFixture
) -> None:
    world.zoom.state.inject_fault(
        Fault(status=503, code=503, message="down", method="POST", path_prefix="/v2/users", times=100)
    )
    now = datetime.now(UTC)
    start = soon()
    world.put("evt-1", start)
    world.sync(now)
    caplog.set_level(logging.INFO)
    sid = world.assign("evt-1", start, now)
    t = now
    for _ in range(world.config.max_attempts):
        video = world.video(sid)
        assert video is not None
        if video.status == "missing":
            break
        assert video.status == "pending" and video.next_attempt_at is not None and video.next_attempt_at > t
        t = video.next_attempt_at
        sweep(world.store, world.factory, world.config, now=t)
    video = world.video(sid)
    assert video is not None and video.status == "missing" and video.link_status == "missing"
    assert "Zoom answered 503" in (video.reason or "")
    assert "video.link_missing" in world.outbox_kinds()
    assert CLIENT_NAME not in caplog.text
    assert world.meetings() == []
    # Held: the sweep leaves it alone; the therapist's retry makes the meeting.
    world.zoom.state.faults.clear()
    assert sweep(world.store, world.factory, world.config, now=t + timedelta(hours=5)) == {}
    assert retry_session(world.store, world.therapist, sid, world.factory, world.config) == "created"
    assert len(world.meetings()) == 1


def test_an_expired_token_is_refreshed_once(world: VideoWorld) -> None:
    _one_session(world, soon())
    issued = world.zoom.state.tokens_issued
    world.zoom.state.expire_tokens()
    _one_session(world, soon(days=3), uid="evt-2")
    assert len(world.meetings()) == 2
    assert world.zoom.state.tokens_issued == issued + 1


def test_revoked_credentials_need_reconnect_and_links_stay(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [meeting] = world.meetings()
    world.zoom.state.deactivate_app(world.zoom.state.s2s_apps and next(iter(world.zoom.state.s2s_apps)))
    world.put("evt-1", start + timedelta(hours=1))
    world.sync()
    connection = get_video_connection(world.store, world.therapist)
    assert connection is not None and connection.health == "needs_reconnect"
    video = world.video(sid)
    assert video is not None and video.status == "active" and video.join_url == meeting.join_url()
    # A new session while disconnected shows why it has no link.
    sid2 = _one_session(world, soon(days=4), uid="evt-2")
    assert "reconnect" in (world.video(sid2).reason or "")  # type: ignore[union-attr]
    assert world.video(sid2).link_status == "missing"  # type: ignore[union-attr]


def test_a_meeting_deleted_in_zoom_is_reported_missing_not_recreated(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [meeting] = world.meetings()
    world.zoom.state.delete_by_host(meeting.id)
    world.put("evt-1", start + timedelta(hours=1))
    world.sync()
    video = world.video(sid)
    assert video is not None and video.status == "missing" and "deleted outside" in (video.reason or "")
    assert world.meetings() == []
    world.put("evt-1", start + timedelta(hours=2))
    world.sync()
    assert world.meetings() == []


def test_no_connection_is_visible_and_connecting_provisions(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    world = VideoWorld(store, zoom, tmp_path)
    sid = _one_session(world, soon())
    video = world.video(sid)
    assert video is not None and video.link_status == "missing" and "no Zoom connection" in (video.reason or "")
    world.connect()
    assert sweep(store, world.factory, world.config) == {"created": 1}


def test_a_create_whose_answer_was_lost_is_looked_up_before_it_is_repeated(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    [meeting] = world.meetings()
    with world.store.session() as session:
        row = session.scalar(select(SessionVideo).where(SessionVideo.session_id == sid))
        assert row is not None and row.marker is not None and row.create_sent_at is not None
        # As if the answer never arrived: the intent is recorded, the meeting id is not.
        row.meeting_id, row.join_url, row.status, row.provider = None, None, "pending", "zoom"
    assert reconcile_session(world.store, sid, world.factory, world.config) == "recovered"
    assert [m.id for m in world.meetings()] == [meeting.id]
    video = world.video(sid)
    assert video is not None and video.meeting_id == str(meeting.id) and video.join_url == meeting.join_url()


def test_a_lost_create_for_a_cancelled_session_is_found_and_deleted(world: VideoWorld) -> None:
    start = soon()
    sid = _one_session(world, start)
    with world.store.session() as session:
        row = session.scalar(select(SessionVideo).where(SessionVideo.session_id == sid))
        assert row is not None
        row.meeting_id, row.join_url, row.status = None, None, "pending"
    world.cancel("evt-1", start)
    world.sync()
    assert world.meetings() == []
