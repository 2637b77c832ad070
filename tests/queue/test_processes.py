"""The processes an operator runs: ``alliance serve`` (web + worker, or --no-worker) and ``alliance worker``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx

from alliance.jobs import build_registry
from alliance.reconcile import request_sync
from core.jobs import JobRegistry
from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from tests.conftest import TEST_MASTER_KEY
from tests.queue.conftest import QUIET, Feed, Workers, scalar, settings_from, wait_until


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, process: subprocess.Popen[str]) -> httpx.Response | None:
    if process.poll() is not None:
        raise AssertionError(f"the process exited early: {process.communicate()[1]}")
    try:
        return httpx.get(url, timeout=5)
    except httpx.TransportError:
        return None


@contextmanager
def _serve(env: dict[str, str], *extra: str) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alliance", "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)


def test_serve_on_postgres_runs_a_queue_worker_and_readyz_reports_it(
    env: dict[str, str], pg_store: Store, registry: JobRegistry, feed: Feed, connection_id: int
) -> None:
    with _serve(env) as (base, process):
        ready = wait_until(
            lambda: (r := _get(base + "/readyz", process)) is not None and r.status_code == 200 and r, "ready"
        )
        assert ready.json()["checks"]["worker"] == "ok"
        request_sync(pg_store, registry, connection_id, datetime.now(UTC))
        wait_until(lambda: len(list_occurrences(pg_store)) == Feed.EVENTS, "the in-process worker synced")
    assert process.returncode == 0
    assert scalar(pg_store, "SELECT count(*) FROM procrastinate_workers") == 0  # unregistered on the way out


def test_serve_no_worker_is_a_web_process_only(env: dict[str, str], pg_store: Store) -> None:
    with _serve(env, "--no-worker") as (base, process):
        ready = wait_until(lambda: _get(base + "/readyz", process), "alliance serve answered")
        assert ready.status_code == 200
        assert "worker" not in ready.json()["checks"]
        assert scalar(pg_store, "SELECT count(*) FROM procrastinate_workers") == 0


def test_a_worker_whose_heartbeat_is_older_than_a_minute_fails_its_readiness(pg_store: Store, workers: Workers) -> None:
    port = _free_port()
    # Heartbeats far apart, so the one made stale below stays stale while the probe looks.
    process = workers.start("--health-port", str(port), env={"ALLIANCE_WORKER_HEARTBEAT_SECONDS": "60"})
    url = f"http://127.0.0.1:{port}/readyz"
    assert wait_until(lambda: _get(url, process), "the health port answered").status_code == 200
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE procrastinate_workers SET last_heartbeat = now() - interval '61 seconds'")
    response = _get(url, process)
    assert response is not None and response.status_code == 503


def test_procrastinate_on_sqlite_is_a_clear_startup_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(tmp_path / "home"), "ALLIANCE_QUEUE": "procrastinate", "ALLIANCE_TIMEZONE": "UTC"})
    for command in (["worker"], ["serve", "--port", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "alliance", *command], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 1
        assert "ALLIANCE_QUEUE=procrastinate needs PostgreSQL" in done.stderr


def test_worker_on_sqlite_runs_the_embedded_queue_beside_a_web_only_process(
    tmp_path: Path, sqlite_store: Store, feed: Feed
) -> None:
    # One machine, SQLite: `alliance serve --no-worker` answers, `alliance worker` does the jobs.
    url = str(sqlite_store.engine.url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update(QUIET)
    env.update({"ALLIANCE_HOME": str(tmp_path / "home"), "ALLIANCE_MASTER_KEY": TEST_MASTER_KEY})
    env["ALLIANCE_DATABASE_URL"] = url
    settings = settings_from(env)
    therapist = ensure_therapist(sqlite_store, "therapist@example.org")
    connection_id = add_connection(sqlite_store, therapist, "ics", "practice", {"source": feed.url})
    with _serve(env, "--no-worker") as (base, web):
        ready = wait_until(lambda: _get(base + "/readyz", web), "alliance serve answered")
        assert ready.status_code == 200 and "worker" not in ready.json()["checks"]
        request_sync(sqlite_store, build_registry(settings), connection_id, datetime.now(UTC))
        worker = subprocess.Popen(
            [sys.executable, "-m", "alliance", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_until(lambda: len(list_occurrences(sqlite_store)) == Feed.EVENTS, "the worker process synced")
        finally:
            worker.send_signal(signal.SIGTERM)
            _, stderr = worker.communicate(timeout=60)
    assert worker.returncode == 0, stderr
    assert "worker running (embedded queue)" in stderr


def test_worker_on_sqlite_refuses_a_concurrency_it_cannot_give(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(tmp_path / "home"), "ALLIANCE_TIMEZONE": "UTC"})
    done = subprocess.run(
        [sys.executable, "-m", "alliance", "worker", "--concurrency", "3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 1 and "--concurrency applies to the PostgreSQL queue" in done.stderr


def test_a_worker_started_without_options_syncs_calendars_side_by_side(
    pg_store: Store, registry: JobRegistry, workers: Workers, feed: Feed, connection_id: int
) -> None:
    # A sync mostly waits for its provider: one calendar's slow answer must not hold up the next
    # calendar's sync (one job at a time did, and the queue grew behind it under a push storm).
    therapist = ensure_therapist(pg_store, "therapist@example.org")
    second = add_connection(pg_store, therapist, "ics", "second", {"source": feed.url})  # the same slow feed
    feed.hold()
    workers.start()
    now = datetime.now(UTC)
    request_sync(pg_store, registry, connection_id, now)
    request_sync(pg_store, registry, second, now)
    running = "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'sync.connection' AND status = 'doing'"
    # Both jobs taken and both requests at the provider at the same moment: the two syncs run side
    # by side (a job taken but waiting for a thread, or a request its client gave up on, is not).
    wait_until(lambda: scalar(pg_store, running) == 2 and feed.held == 2, "both calendars' syncs running at once")
    feed.release.set()
    wait_until(lambda: len(list_occurrences(pg_store)) == 2 * Feed.EVENTS, "both calendars synced")
    assert "worker running (concurrency 4)" in workers.log(0)


def test_worker_concurrency_comes_from_the_setting_unless_given(workers: Workers, env: dict[str, str]) -> None:
    workers.start(env={"ALLIANCE_WORKER_CONCURRENCY": "2"})
    workers.start("--concurrency", "3", env={"ALLIANCE_WORKER_CONCURRENCY": "2"})
    assert "worker running (concurrency 2)" in workers.log(0)
    assert "worker running (concurrency 3)" in workers.log(1)
    done = subprocess.run(
        [sys.executable, "-m", "alliance", "worker"],
        env={**env, "ALLIANCE_WORKER_CONCURRENCY": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode != 0 and "WORKER_CONCURRENCY" in done.stderr.upper(), done.stderr
