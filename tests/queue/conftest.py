"""Fixtures for the PostgreSQL queue (issue 9): a clean database, worker processes, a slow ICS feed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from alliance.jobs import build_registry
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.jobs import JobRegistry
from core.mirror import add_connection, ensure_therapist, get_connection
from core.store import Store
from core.store.db import make_engine
from tests.conftest import TEST_MASTER_KEY, test_keyring

pytestmark = pytest.mark.postgres

# Every periodic job of the registry but the one a test looks at stays out of the way.
QUIET = {
    "ALLIANCE_SYNC_INTERVAL_MINUTES": "1440",
    "ALLIANCE_MAIL_POLL_SECONDS": "3600",
    "ALLIANCE_VIDEO_EVENTS_SECONDS": "3600",
    "ALLIANCE_VIDEO_SWEEP_SECONDS": "86400",
    "ALLIANCE_CLIENT_MAIL_SWEEP_SECONDS": "86400",
    "ALLIANCE_WORKER_HEARTBEAT_SECONDS": "0.5",
    "ALLIANCE_WORKER_POLL_SECONDS": "0.5",
    "ALLIANCE_TIMEZONE": "UTC",
}
PROCRASTINATE_TABLES = "procrastinate_events, procrastinate_periodic_defers, procrastinate_jobs, procrastinate_workers"


def wait_until(check: Callable[[], Any], what: str, attempts: int = 600, pause: float = 0.1) -> Any:
    """Poll ``check`` until it returns something truthy (bounded by attempts, not a time assertion)."""
    for _ in range(attempts):
        value = check()
        if value:
            return value
        time.sleep(pause)
    raise AssertionError(f"never happened: {what}")


@pytest.fixture
def pg_url(clean_postgres_url: str) -> str:
    """The test run's PostgreSQL database with our tables and procrastinate's emptied."""
    engine = make_engine(clean_postgres_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {PROCRASTINATE_TABLES} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return clean_postgres_url


@pytest.fixture
def env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    """Environment of an ``alliance`` process on this database (the test run's master key)."""
    values = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    values.update(QUIET)
    values.update(
        {
            "ALLIANCE_HOME": str(tmp_path / "home"),
            "ALLIANCE_MASTER_KEY": TEST_MASTER_KEY,
            "ALLIANCE_DATABASE_URL": pg_url,
        }
    )
    return values


def settings_from(env: dict[str, str]) -> Settings:
    return Settings(**{k.removeprefix("ALLIANCE_").lower(): v for k, v in env.items() if k.startswith("ALLIANCE_")})


@pytest.fixture
def settings(env: dict[str, str]) -> Settings:
    return settings_from(env)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    s = Store(make_engine(pg_url), keyring=test_keyring())
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def registry(settings: Settings) -> JobRegistry:
    """The registry a web process builds: on PostgreSQL its backend is procrastinate."""
    return build_registry(settings)


def scalar(store: Store, sql: str, **params: Any) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(store: Store, sql: str, **params: Any) -> list[Any]:
    with store.engine.connect() as conn:
        return list(conn.execute(text(sql), params))


class Workers:
    """``alliance worker`` processes of one test; all are killed at the end."""

    def __init__(self, env: dict[str, str], store: Store, tmp_path: Path) -> None:
        self.env = env
        self.store = store
        self.tmp_path = tmp_path
        self.processes: list[subprocess.Popen[str]] = []

    def start(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        before = scalar(self.store, "SELECT count(*) FROM procrastinate_workers")
        log = (self.tmp_path / f"worker-{len(self.processes)}.log").open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "alliance", "worker", *extra],
            env={**self.env, **(env or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.processes.append(process)

        def registered() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"alliance worker exited early: {self.log(len(self.processes) - 1)}")
            return bool(scalar(self.store, "SELECT count(*) FROM procrastinate_workers") > before)

        wait_until(registered, "the worker registered", attempts=300)
        return process

    def log(self, index: int) -> str:
        return (self.tmp_path / f"worker-{index}.log").read_text()

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture
def workers(env: dict[str, str], pg_store: Store, tmp_path: Path) -> Iterator[Workers]:
    w = Workers(env, pg_store, tmp_path)
    try:
        yield w
    finally:
        w.stop_all()


def _ics(now: datetime, count: int) -> bytes:
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//alliance tests//EN"]
    for i in range(count):
        start = (now + timedelta(days=i + 1)).replace(hour=9, minute=0, second=0, microsecond=0)
        lines += [
            "BEGIN:VEVENT",
            f"UID:queue-test-{i}@example.org",
            f"DTSTAMP:{now:%Y%m%dT%H%M%SZ}",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(minutes=50):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Session {i}",
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


class Feed:
    """A real HTTP ICS feed whose answers a test can hold back (a slow provider) or fail."""

    EVENTS = 3

    def __init__(self) -> None:
        self.requests = 0
        self.started = threading.Event()  # set when a request arrives
        self.release = threading.Event()  # a held request answers when this is set
        self.release.set()
        self.fail_next = 0  # how many of the next requests answer 500
        self.held = 0  # requests waiting for ``release`` right now (their client may have given up)
        self.body = _ics(datetime.now(UTC), self.EVENTS)
        self._lock = threading.Lock()
        feed = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with feed._lock:
                    feed.requests += 1
                    fail = feed.fail_next > 0
                    feed.fail_next -= 1 if fail else 0
                    feed.held += 1
                feed.started.set()
                feed.release.wait(120)
                with feed._lock:
                    feed.held -= 1
                if fail:
                    self.send_error(500)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/calendar")
                self.send_header("Content-Length", str(len(feed.body)))
                self.end_headers()
                self.wfile.write(feed.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/practice.ics"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def hold(self) -> None:
        self.started.clear()
        self.release.clear()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def feed() -> Iterator[Feed]:
    f = Feed()
    try:
        yield f
    finally:
        f.close()


@pytest.fixture
def connection_id(pg_store: Store, feed: Feed, settings: Settings) -> int:
    """An ICS connection on ``feed``, synced once already (one event); the feed now has EVENTS.

    The first sync is made here, directly: a connection never synced is due for reconciliation at
    once, and the workers' ``sync.all`` sweep would add syncs of its own to what a test counts.
    """
    therapist = ensure_therapist(pg_store, "therapist@example.org")
    connection_id = add_connection(pg_store, therapist, "ics", "practice", {"source": feed.url})
    feed.body = _ics(datetime.now(UTC), 1)
    connection = get_connection(pg_store, therapist, connection_id)
    assert connection is not None
    outcome = sync_one(pg_store, settings, connection)
    assert outcome.failure is None
    feed.body = _ics(datetime.now(UTC), Feed.EVENTS)
    feed.requests = 0
    return connection_id
