"""Kill a real process between "create sent" and "meeting id stored": still exactly one meeting."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from core.clients import assign_occurrence, find_occurrence
from core.store import Store
from core.video.models import SessionVideo
from core.video.service import reconcile_session
from sandbox.zoom import RunningZoom, Settings, ZoomState, run_zoom_emulator
from tests.conftest import TEST_MASTER_KEY
from tests.video.world import VideoWorld, soon

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        yield emu


def test_killed_between_create_sent_and_id_stored_still_one_meeting(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    world = VideoWorld(store, zoom, tmp_path)
    world.connect()
    start = soon()
    world.put("evt-1", start)
    world.sync()
    occurrence_id = find_occurrence(store, world.therapist, "evt-1", start)
    # Assigned without running the outbox: the child process does the provisioning.
    sid = assign_occurrence(store, world.therapist, occurrence_id, world.client, modality="online").id
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
    # While the dead worker's lease lasts nobody touches the session; after it, the run looks the
    # marker up and adopts the meeting instead of creating another.
    assert reconcile_session(store, sid, world.factory, world.config) == "busy"
    later = datetime.now(UTC) + world.config.lease + timedelta(seconds=1)
    assert reconcile_session(store, sid, world.factory, world.config, now=later) == "recovered"
    [meeting] = world.meetings()
    video = world.video(sid)
    assert video is not None and video.meeting_id == str(meeting.id) and video.join_url == meeting.join_url()
    world.deliver()  # the session.assigned event, delivered late: still one meeting
    assert len(world.meetings()) == 1
