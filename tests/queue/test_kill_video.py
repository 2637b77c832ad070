"""A worker killed mid-provisioning (SIGKILL after Zoom made the meeting, before we stored it).

Another worker finishes the session: exactly one Zoom meeting, the session has its link, and the
reaper frees what the dead worker held. Short leases (ALLIANCE_VIDEO_LEASE_SECONDS, the reaper's
stale threshold) keep it to seconds.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from sqlalchemy import select

from alliance.queue.worker import QueueWorker
from alliance.settings import Settings as AllianceSettings
from alliance.syncing import sync_one
from core.clients import assign_occurrence, create_client
from core.mirror import get_connection, list_occurrences
from core.store import Store
from core.video.models import SessionVideo
from core.video.service import connect_video
from core.video.views import video_links
from sandbox.zoom import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    RunningZoom,
    Settings,
    ZoomState,
    run_zoom_emulator,
)
from sandbox.zoom.state import Meeting
from tests.queue.conftest import Workers, rows, scalar, settings_from, wait_until
from tests.queue.test_kill import STALE_SECONDS, _reap

LEASE_SECONDS = 2


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        yield emu


def _meetings(zoom: RunningZoom) -> list[Meeting]:
    with zoom.state.lock:
        return list(zoom.state.meetings.values())


def _row(store: Store, session_id: int) -> SessionVideo | None:
    with store.session() as session:
        return session.scalar(select(SessionVideo).where(SessionVideo.session_id == session_id))


def _settled(store: Store) -> bool:
    """Every outbox event handed to the queue and every video delivery of them run."""
    return bool(
        scalar(
            store,
            """
            SELECT NOT EXISTS (SELECT 1 FROM outbox o WHERE NOT EXISTS
                                   (SELECT 1 FROM outbox_deliveries d WHERE d.event_id = o.event_id))
               AND NOT EXISTS (SELECT 1 FROM outbox_deliveries
                                WHERE handler = 'video.lifecycle' AND status IN ('pending', 'running'))
            """,
        )
    )


def test_a_worker_killed_after_zoom_made_the_meeting_leaves_one_meeting_and_the_link(
    pg_store: Store,
    pg_url: str,
    env: dict[str, str],
    settings: AllianceSettings,
    workers: Workers,
    zoom: RunningZoom,
    connection_id: int,
) -> None:
    therapist = int(scalar(pg_store, "SELECT therapist_id FROM connections WHERE id = :c", c=connection_id))
    connection = get_connection(pg_store, therapist, connection_id)
    assert connection is not None and sync_one(pg_store, settings, connection).failure is None
    # The feed's last event, in three days: outside a one-day window, inside the default one.
    occurrence = list_occurrences(pg_store)[-1]
    connect_video(
        pg_store,
        therapist,
        "zoom",
        "s2s",
        {
            "account_id": DEFAULT_ACCOUNT_ID,
            "client_id": DEFAULT_CLIENT_ID,
            "client_secret": DEFAULT_CLIENT_SECRET,
            "user_id": zoom.state.default_user.id,
        },
    )
    client = create_client(pg_store, therapist, name="Annabel Quigley", modality="online").code
    session_id = assign_occurrence(pg_store, therapist, occurrence.id, client, modality="online").id
    zoom_env = {
        "ALLIANCE_ZOOM_API_URL": zoom.api_url,
        "ALLIANCE_ZOOM_OAUTH_URL": zoom.base_url,
        "ALLIANCE_VIDEO_LEASE_SECONDS": str(LEASE_SECONDS),
        "ALLIANCE_VIDEO_SWEEP_SECONDS": "5",
    }
    # The session's events are delivered while it is outside the window: no meeting yet, and no
    # outbox delivery is left that would bring it back. From now on only the sweep creates it
    # (how most meetings are made: sessions entering the rolling window).
    # (A worker in this process: one process start less.)
    early = QueueWorker(pg_store, settings_from({**env, **zoom_env, "ALLIANCE_VIDEO_WINDOW_DAYS": "1"}))
    early.start()
    try:
        wait_until(lambda: _settled(pg_store), "the session's events were delivered")
    finally:
        early.stop(30)
    row = _row(pg_store, session_id)
    assert row is not None and row.status == "later" and not _meetings(zoom)

    zoom.state.settings.create_delay = 120.0  # Zoom makes the meeting at once; its answer never comes in time
    doomed = workers.start(env=zoom_env)
    wait_until(lambda: len(_meetings(zoom)) == 1, "the sweep's create reached Zoom")
    [(worker_id, task)] = rows(pg_store, "SELECT worker_id, task_name FROM procrastinate_jobs WHERE status = 'doing'")
    assert task == "video.sweep"
    doomed.send_signal(signal.SIGKILL)
    doomed.wait()
    row = _row(pg_store, session_id)
    # The worst moment: the meeting exists at Zoom, we have only the marker sent with it.
    assert row is not None and row.create_sent_at is not None and row.meeting_id is None

    zoom.state.settings.create_delay = 0.0
    workers.start(env=zoom_env)
    wait_until(
        lambda: scalar(
            pg_store,
            "SELECT now() - last_heartbeat > make_interval(secs => :s) FROM procrastinate_workers WHERE id = :w",
            s=STALE_SECONDS,
            w=worker_id,
        ),
        "the killed worker's heartbeat went stale",
    )
    # The dead sweep holds the sweep's lock; the reaper takes it back so the next sweep can run.
    counts = _reap(pg_url)
    assert counts.retried + counts.failed == 1
    assert (
        scalar(
            pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' AND worker_id = :w", w=worker_id
        )
        == 0
    )

    def linked() -> bool:
        video = video_links(pg_store, therapist, [session_id]).get(session_id)
        return video is not None and video.status == "active"

    wait_until(linked, "the other worker finished the session")
    [meeting] = _meetings(zoom)  # adopted by its marker, not created a second time
    assert video_links(pg_store, therapist, [session_id])[session_id].join_url == meeting.join_url()
    row = _row(pg_store, session_id)
    assert row is not None and row.meeting_id == str(meeting.id) and row.lease_until is None
