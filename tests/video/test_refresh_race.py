"""Two workers refreshing one therapist's rotating Zoom refresh token at once (user-level OAuth).

Zoom invalidates a refresh token as soon as it issues the next one. Two workers that both hold the
same stale access token both refresh: without coordination the second spends a token that is
already dead (``invalid_grant``) and the connection looks revoked. The refresh runs under the
connection's database lock (row lock on PostgreSQL, write lock on SQLite) and re-reads the stored
token after acquiring it, so the second worker uses the first one's new token.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from alliance.settings import Settings as AllianceSettings
from core.clients import assign_occurrence, find_occurrence
from core.mirror import ensure_therapist
from core.store import Store
from core.video.provider import MeetingSpec, ProviderNeedsReconnect
from core.video.service import (
    VideoConnectionInfo,
    connect_video,
    get_video_connection,
    update_credentials_locked,
)
from integrations.zoom.factory import ZoomOptions, make_provider
from sandbox.zoom import RunningZoom, Settings, ZoomState, run_zoom_emulator
from tests.conftest import TEST_MASTER_KEY
from tests.video.world import VideoWorld, soon

ROOT = Path(__file__).resolve().parents[2]

APP_ID, APP_SECRET = "therapist-app", "therapist-app-secret"
REDIRECT = "http://127.0.0.1/connect/zoom/callback"
WORKERS = 2


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings())) as emu:
        emu.state.add_user_app(APP_ID, APP_SECRET, (REDIRECT,))
        yield emu


def _grant(zoom: RunningZoom) -> dict[str, Any]:
    code = zoom.state.authorize(APP_ID, REDIRECT)
    tokens = zoom.state.code_token(APP_ID, APP_SECRET, code, REDIRECT)
    # Stored as it was an hour ago: the access token has expired, a refresh is due.
    return {"access_token": tokens["access_token"], "refresh_token": tokens["refresh_token"], "expires_at": 0}


def _spec(i: int) -> MeetingSpec:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=2, hours=i)
    return MeetingSpec("Appointment", start, 50, "UTC", f"marker{i}", "pass1234")


def _race(store: Store, zoom: RunningZoom, *, locked: bool) -> tuple[list[Any], int, int]:
    therapist = ensure_therapist(store, "ana@example.org")
    credentials = {**_grant(zoom), "user_id": "me"}
    connection_id = connect_video(store, therapist, "zoom", "user", credentials)
    options = ZoomOptions(
        api_url=zoom.api_url, oauth_url=zoom.base_url, user_client_id=APP_ID, user_client_secret=APP_SECRET
    )
    saved: list[dict[str, Any]] = []

    def locked_update(step: Any) -> dict[str, Any]:
        return update_credentials_locked(store, connection_id, step)

    # Each worker loaded the connection before either refreshed: both hold the same stale tokens.
    providers = [
        make_provider(
            VideoConnectionInfo(
                connection_id,
                therapist,
                "zoom",
                "user",
                dict(credentials),
                locked_update if locked else None,
            ),
            saved.append,
            options,
        )
        for _ in range(WORKERS)
    ]
    barrier = threading.Barrier(WORKERS)
    results: list[Any] = [None] * WORKERS

    def work(i: int) -> None:
        barrier.wait()
        try:
            results[i] = providers[i].create(_spec(i))
        except ProviderNeedsReconnect as exc:
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    refreshes = sum(p.api._tokens.refreshes for p in providers)  # requests each source sent
    return results, refreshes, connection_id


def test_concurrent_refreshes_share_one_rotation_and_both_workers_go_on(store: Store, zoom: RunningZoom) -> None:
    results, refreshes, connection_id = _race(store, zoom, locked=True)
    assert all(not isinstance(r, Exception) for r in results), results
    assert len(zoom.state.meetings) == WORKERS
    assert refreshes == 1  # the second worker found the first one's new token under the lock
    # What is stored is the live refresh token: it still works for the next refresh.
    stored = update_credentials_locked(store, connection_id, lambda current: None)
    assert zoom.state.refresh(APP_ID, APP_SECRET, stored["refresh_token"])["access_token"]


def test_without_the_lock_one_worker_spends_a_dead_refresh_token(store: Store, zoom: RunningZoom) -> None:
    # The failure the lock prevents, shown through the same stack without it.
    results, refreshes, _ = _race(store, zoom, locked=False)
    assert refreshes == WORKERS
    failed = [r for r in results if isinstance(r, ProviderNeedsReconnect)]
    assert len(failed) == 1 and "invalid_grant" in failed[0].reason


def _run_workers(store: Store, zoom: RunningZoom, tmp_path: Path, *, unlocked: bool) -> tuple[VideoWorld, list[str]]:
    world = VideoWorld(
        store,
        zoom,
        tmp_path,
        settings=AllianceSettings(
            home=tmp_path,
            zoom_api_url=zoom.api_url,
            zoom_oauth_url=zoom.base_url,
            zoom_client_id=APP_ID,
            zoom_client_secret=APP_SECRET,
        ),
    )
    connect_video(store, world.therapist, "zoom", "user", {**_grant(zoom), "user_id": "me"})
    starts = [soon(days=2, hour=9 + i) for i in range(WORKERS)]
    for i, start in enumerate(starts):
        world.put(f"evt-{i}", start)
    world.sync()
    sids = []
    for i, start in enumerate(starts):
        occurrence = find_occurrence(store, world.therapist, f"evt-{i}", start)
        # Assigned without running the outbox: the worker processes provision the sessions.
        sids.append(assign_occurrence(store, world.therapist, occurrence, world.client, modality="online").id)
    zoom.state.settings.refresh_delay = 1.0  # the first refresh is slow to answer: the second overlaps it
    db_url = store.engine.url.render_as_string(hide_password=False)
    go = tmp_path / "go"
    env = {
        **os.environ,
        "ALLIANCE_TEST_MASTER_KEY": TEST_MASTER_KEY,
        "ALLIANCE_ZOOM_CLIENT_ID": APP_ID,
        "ALLIANCE_ZOOM_CLIENT_SECRET": APP_SECRET,
        "TMPDIR": str(tmp_path),
    }
    args = ["unlocked"] if unlocked else []
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.video.refresh_child",
                db_url,
                zoom.api_url,
                zoom.base_url,
                str(sid),
                str(go),
                *args,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for sid in sids
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        go.touch()  # both workers start together, each with the expired access token it loaded
        outcomes = []
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            outcomes.append(out.strip())
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return world, outcomes


def test_two_worker_processes_refresh_once_and_both_make_their_meeting(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    world, outcomes = _run_workers(store, zoom, tmp_path, unlocked=False)
    assert outcomes == ["created"] * WORKERS
    assert len(world.meetings()) == WORKERS
    assert zoom.state.count_requests("POST", "/oauth/token") == 1
    connection = get_video_connection(store, world.therapist)
    assert connection is not None and connection.health == "ok"


def test_two_worker_processes_without_the_lock_lose_the_rotation(
    store: Store, zoom: RunningZoom, tmp_path: Path
) -> None:
    # The failure the lock prevents: the second refresh spends a token the first one rotated away.
    world, outcomes = _run_workers(store, zoom, tmp_path, unlocked=True)
    assert sorted(outcomes) == ["created", "needs_reconnect"]
    connection = get_video_connection(store, world.therapist)
    assert connection is not None and connection.health == "needs_reconnect"
