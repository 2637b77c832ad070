"""Done when: with the embedded worker running, an online session gets its Zoom meeting, and the
real end of the call is known (``session.ended``) seconds after Zoom's signed ``meeting.ended``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from alliance.app import create_app
from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.clients import assign_occurrence, find_occurrence
from core.store import OutboxEvent, Store
from core.sync import sync_connection
from core.video.calls import SESSION_ENDED
from integrations.base import MemoryProvider
from sandbox.zoom import DEFAULT_WEBHOOK_SECRET, RunningZoom, ZoomState, run_zoom_emulator
from sandbox.zoom import Settings as ZoomSettings
from tests.conftest import TEST_MASTER_KEY
from tests.video.world import VideoWorld, soon
from tests.webhooks.serve import serve


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(ZoomSettings())) as emu:
        yield emu


def _eventually(check: Callable[[], bool], what: str, attempts: int = 600) -> None:
    # Polls the outcome (bounded), never asserts how long it took.
    for _ in range(attempts):
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def test_the_worker_provisions_and_meeting_ended_becomes_session_ended(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    settings = Settings(  # type: ignore[arg-type]
        home=tmp_path / "home",
        master_key=TEST_MASTER_KEY,
        timezone="UTC",
        zoom_api_url=zoom.api_url,
        zoom_oauth_url=zoom.base_url,
        zoom_webhook_secret=DEFAULT_WEBHOOK_SECRET,
        video_events_seconds=1,
        sync_interval_minutes=24 * 60,
    )
    world = VideoWorld(store, zoom, tmp_path, settings=settings)
    world.connect()
    start = soon()
    world.put("evt-1", start)
    sync_connection(store, world.connection, MemoryProvider(world.calendar))
    sid = assign_occurrence(
        store, world.therapist, find_occurrence(store, world.therapist, "evt-1", start), world.client, modality="online"
    ).id
    worker = EmbeddedWorker(store, settings, poll_interval=0.2)
    worker.start()
    try:
        with serve(create_app(settings, store=store, worker=worker)) as base:
            zoom.state.settings.webhook_url = base + "/webhooks/zoom"
            _eventually(lambda: len(world.meetings()) == 1, "a meeting for the session")
            [meeting] = world.meetings()
            assert zoom.sender.validate_endpoint()
            assert zoom.sender.meeting_started(meeting.id).attempts == [200]
            assert zoom.sender.meeting_ended(meeting.id).attempts == [200]

            def ended() -> bool:
                with store.session() as session:
                    return session.scalar(select(OutboxEvent.id).where(OutboxEvent.kind == SESSION_ENDED)) is not None

            _eventually(ended, "session.ended after meeting.ended")
    finally:
        worker.stop()
    video = world.video(sid)
    assert video is not None and video.call_started_at is not None and video.call_ended_at is not None
    assert len(world.meetings()) == 1
