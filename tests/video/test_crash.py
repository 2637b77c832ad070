"""Kill a real process between "create sent" and "meeting id stored": still exactly one meeting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from alliance.jobs import build_registry
from core.clients import assign_occurrence, find_occurrence
from core.jobs import Event
from core.store import OutboxEvent, Store
from core.sync import sync_connection
from core.video.models import HostBudget, SessionVideo
from core.video.service import SessionBusy, reconcile_session, sweep
from integrations.base import MemoryProvider
from sandbox.zoom import RunningZoom, Settings, ZoomState, run_zoom_emulator
from tests.conftest import TEST_MASTER_KEY
from tests.video.world import VideoWorld, soon

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        yield emu


def _online_session(store: Store, zoom: RunningZoom, tmp_path: Path) -> tuple[VideoWorld, datetime, int]:
    """A synced event assigned as an online session, its outbox not run: nobody provisioned it yet."""
    world = VideoWorld(store, zoom, tmp_path)
    world.connect()
    start = soon()
    world.put("evt-1", start)
    world.sync()
    occurrence_id = find_occurrence(store, world.therapist, "evt-1", start)
    sid = assign_occurrence(store, world.therapist, occurrence_id, world.client, modality="online").id
    return world, start, sid


def _kill_after_create_sent(store: Store, zoom: RunningZoom, world: VideoWorld, sid: int, tmp_path: Path) -> None:
    """A worker process sends the session's create and is killed before it stores the meeting id."""
    zoom.state.settings.create_delay = 60.0  # Zoom has made the meeting; its answer is very late

    db_url = store.engine.url.render_as_string(hide_password=False)
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.video.crash_child", db_url, zoom.api_url, zoom.base_url, str(sid)],
        cwd=ROOT,
        env={**os.environ, "ALLIANCE_TEST_MASTER_KEY": TEST_MASTER_KEY, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(600):  # up to a minute for the child to start and send the create
            if world.meetings() or child.poll() is not None:
                break
            time.sleep(0.1)
        assert child.poll() is None, child.stderr.read().decode() if child.stderr else ""
        assert len(world.meetings()) == 1
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    with store.session() as session:
        row = session.scalar(select(SessionVideo).where(SessionVideo.session_id == sid))
        assert row is not None and row.create_sent_at is not None and row.meeting_id is None
        assert row.lease_until is not None  # the dead worker's lease is still on the row
    zoom.state.settings.create_delay = 0.0


def _budget_used(store: Store) -> int:
    with store.session() as session:
        return sum(session.scalars(select(HostBudget.used)))


def test_killed_between_create_sent_and_id_stored_still_one_meeting(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    # Assigned without running the outbox: the child process does the provisioning.
    world, start, sid = _online_session(store, zoom, tmp_path)
    _kill_after_create_sent(store, zoom, world, sid, tmp_path)

    # While the dead worker's lease lasts nobody touches the session; after it, the sweep finds
    # the session due (a create started by the sweep has no outbox delivery to come back), looks
    # the marker up and adopts the meeting instead of creating another.
    assert reconcile_session(store, sid, world.factory, world.config) == "busy"
    assert sweep(store, world.factory, world.config) == {}
    later = datetime.now(UTC) + world.config.lease + timedelta(seconds=1)
    assert sweep(store, world.factory, world.config, now=later) == {"recovered": 1}
    [meeting] = world.meetings()
    video = world.video(sid)
    assert video is not None and video.meeting_id == str(meeting.id) and video.join_url == meeting.join_url()
    # Nothing moved: the adopted meeting is left as it is (no update spent on it).
    assert meeting.start_time == start
    assert zoom.state.count_requests("PATCH", "/meetings/") == 0
    assert _budget_used(store) == 1
    world.deliver()  # the session.assigned event, delivered late: still one meeting
    assert len(world.meetings()) == 1


def test_a_meeting_adopted_after_the_session_moved_is_moved_to_the_new_time(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    world, start, sid = _online_session(store, zoom, tmp_path)
    _kill_after_create_sent(store, zoom, world, sid, tmp_path)

    # Meanwhile the therapist moves the session (and makes it longer), and the move is delivered:
    # there is no meeting id to patch yet, and the dead worker's lease holds the session.
    moved = start + timedelta(hours=2)
    world.put("evt-1", moved, minutes=80)
    world.sync()
    assert world.outcomes[-1] == {sid: "busy"}
    [meeting] = world.meetings()
    assert meeting.start_time == start and meeting.duration == 50  # Zoom still has the creation's time

    later = datetime.now(UTC) + world.config.lease + timedelta(seconds=1)
    assert sweep(store, world.factory, world.config, now=later) == {"recovered": 1}
    [meeting] = world.meetings()  # adopted, not created again
    assert meeting.start_time == moved and meeting.duration == 80
    assert zoom.state.count_requests("PATCH", "/meetings/") == 1
    assert _budget_used(store) == 2  # the create and the update, as for any move
    video = world.video(sid)
    assert video is not None and video.status == "active" and video.join_url == meeting.join_url()
    # Settled: nothing is due, and another look changes nothing.
    assert sweep(store, world.factory, world.config, now=later) == {}
    assert reconcile_session(store, sid, world.factory, world.config, now=later) == "nothing"
    assert zoom.state.count_requests("PATCH", "/meetings/") == 1


def _last_event(session: Session) -> Event:
    row = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id.desc()).limit(1)).one()
    return Event(
        event_id=row.event_id,
        kind=row.kind,
        therapist_id=row.therapist_id,
        connection_id=row.connection_id,
        occurrence_id=row.occurrence_id,
        payload=dict(row.payload or {}),
        created_at=row.created_at,
        attempt=1,
        session=session,
    )


def test_a_move_delivered_while_another_run_holds_the_session_is_delivered_again_not_dropped(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    world, start, sid = _online_session(store, zoom, tmp_path)
    zoom.state.settings.create_delay = 1.0  # a slow create: another run holds the session meanwhile
    holder = threading.Thread(target=reconcile_session, args=(store, sid, world.factory, world.config))
    holder.start()
    try:
        for _ in range(600):
            if world.meetings():
                break
            time.sleep(0.05)
        # The therapist moves the session while the create (made from the old time) is in flight.
        moved = start + timedelta(hours=1)
        world.put("evt-1", moved)
        sync_connection(store, world.connection, MemoryProvider(world.calendar))
        lifecycle = build_registry(world.settings).handler_named("video.lifecycle")
        assert lifecycle is not None
        with store.session() as session:
            event = _last_event(session)
            assert event.kind.startswith("occurrence.")
            # Dropping it would keep the meeting at the old time: the delivery fails, to be retried.
            with pytest.raises(SessionBusy):
                lifecycle.fn(store, event)
    finally:
        holder.join(60)
    [meeting] = world.meetings()
    assert meeting.start_time == start  # the holder made it from what it had read
    with store.session() as session:
        lifecycle.fn(store, _last_event(session))  # the delivery's next attempt
    [meeting] = world.meetings()
    assert meeting.start_time == moved
