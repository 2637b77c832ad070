"""Scale-out load test: a push storm over many Google calendars, web and worker processes on one PostgreSQL.

One run (per worker count, default 3 then 1):

- a scratch PostgreSQL database (created, migrated, dropped at the end, even after a failure);
- the Google emulator (``sandbox/google``) in its own process, one calendar per connection with a
  few events, every API request delayed by ``--latency`` seconds (an I/O-bound provider) and its
  push sender (``--push-senders`` threads) aimed at the web processes;
- N therapists with one Google connection each, added through core (``core.mirror``: the store
  calls ``alliance connect google --token-file`` makes, with the provider's own
  ``normalize_settings``), a push channel each (``events.watch`` at the emulator, recorded with
  ``core.push.record_channel``), half of them pointing at each web process;
- the processes: ``--web`` web processes and W worker processes, their commands given by
  ``--stack`` (or ``--web-cmd`` / ``--worker-cmd``), see :data:`STACKS`;
- the first mirror of every connection, done by the workers (a sync requested per connection),
  with the emulator latency off; then the storm: ``--pings`` pings with no change behind them
  (``POST /_emulator/push/ping``) over ``--seconds`` seconds, spread over the connections with a
  Zipf skew (``--skew``: a few calendars get most pings), plus ``--edits`` moves of random events
  (each followed by the emulator's own push, as Google does), on calendars drawn with the same skew.

Measured: edit -> mirrored row latency (the store is polled every 20 ms for the new start),
syncs executed per push delivered (coalescing), provider ``events.list`` requests per changed page
(a list request that could see an edit made since the calendar's previous list), jobs per second
sustained (sync jobs + outbox deliveries finished, over the time from the storm's start until no
work is left),
PostgreSQL connections (``pg_stat_activity`` sampled every 0.5 s), and the scaling ratio between
worker counts. ``python -m benchmarks.load_storm --quick`` takes 2-3 minutes;
``benchmarks/README.md`` has the figures.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import json
import os
import platform
import random
import secrets
import shlex
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO, Any

import httpx

from benchmarks.harness import free_port, stop_servers

REPO_ROOT = Path(__file__).resolve().parent.parent
ZONE = "Europe/Madrid"
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SYNC_JOB = "sync.connection"
HARNESS_APP = "alliance-load-harness"

# The process commands of each stack; ``{python}`` is this interpreter, ``{port}`` a free port.
# "split" (default): web-only and worker-only processes built from what ``alliance serve`` runs
# (benchmarks/load_roles.py), so the worker count is exactly what scales.
# "embedded": ``alliance serve`` everywhere, as deployed today: the web processes run an embedded
# worker too (woken by the pings they receive), the "workers" are more ``alliance serve`` processes.
# "procrastinate": the scale-out commands of issue 9 (``alliance serve --no-worker``,
# ``alliance worker`` at its default concurrency, ALLIANCE_WORKER_CONCURRENCY) with
# ALLIANCE_QUEUE=procrastinate. Figures before 2026-11-28 05:00 UTC ran ``--concurrency 1``.
STACKS: dict[str, dict[str, Any]] = {
    "split": {
        "web": "{python} -m benchmarks.load_roles web --port {port}",
        "worker": "{python} -m benchmarks.load_roles worker",
        # The embedded runner's table on PostgreSQL (where procrastinate is the default queue).
        "env": {"ALLIANCE_QUEUE": "embedded"},
    },
    "embedded": {
        "web": "{python} -m alliance serve --host 127.0.0.1 --port {port}",
        "worker": "{python} -m alliance serve --host 127.0.0.1 --port {port}",
        "env": {"ALLIANCE_QUEUE": "embedded"},
    },
    "procrastinate": {
        "web": "{python} -m alliance serve --no-worker --host 127.0.0.1 --port {port}",
        "worker": "{python} -m alliance worker",
        "env": {"ALLIANCE_QUEUE": "procrastinate"},
    },
}

FULL: dict[str, float] = {"connections": 2000, "events": 3, "pings": 20000, "edits": 2000, "seconds": 60.0}
QUICK: dict[str, float] = {"connections": 30, "events": 2, "pings": 450, "edits": 45, "seconds": 15.0}


@dataclass
class Config:
    connections: int = int(FULL["connections"])
    events: int = int(FULL["events"])
    pings: int = int(FULL["pings"])
    edits: int = int(FULL["edits"])
    seconds: float = FULL["seconds"]
    workers: int = 3
    web: int = 2
    latency: float = 0.1
    skew: float = 1.0
    push_senders: int = 8
    stack: str = "split"
    # Process commands; None: those of ``stack``.
    web_cmd: str | None = None
    worker_cmd: str | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    poll_seconds: float | None = None  # ALLIANCE_WORKER_POLL_SECONDS; None = the product default
    admin_url: str = DEFAULT_ADMIN_URL
    seed: int = 9
    drain_timeout: float = 300.0


@dataclass
class Conn:
    id: int
    calendar: str
    events: dict[str, datetime]  # event id -> current start (UTC)


# ---------------------------------------------------------------------------------------------
# infrastructure: database, emulator, processes


@contextmanager
def scratch_database(admin_url: str) -> Iterator[str]:
    """A fresh PostgreSQL database (migrated by the first store opened on it); dropped afterwards."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    name = f"alliance_load_{secrets.token_hex(5)}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if "proxy" not in k.lower() and not k.startswith("ALLIANCE_")}


def _wait_http(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not answer at {url} within {timeout:.0f} s")
        time.sleep(0.1)


def _process_cpu(pid: int) -> float:
    """User + system CPU seconds of a running process, its threads included (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def _postgres_cpu() -> float:
    """CPU seconds of the local PostgreSQL server: every ``postgres`` process, plus what the
    postmaster has reaped of backends that exited (its cutime + cstime), so the sum only grows."""
    total = 0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if name != "postgres":
            continue
        fields = rest.split()
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / os.sysconf("SC_CLK_TCK")


def _machine_cpu() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, all cores (Linux /proc/stat)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


class Processes:
    """Child processes with their logs in ``logdir``; all stopped (SIGTERM, then kill) on exit."""

    def __init__(self, logdir: Path) -> None:
        self.logdir = logdir
        self.processes: list[subprocess.Popen[bytes]] = []
        self.names: list[str] = []
        self.logs: list[IO[Any]] = []

    def start(self, name: str, command: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (self.logdir / f"{name}.log").open("wb")
        process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.names.append(name)
        self.logs.append(log)
        return process

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) used so far, per role: the name without its number."""
        out: dict[str, float] = {}
        for name, process in zip(self.names, self.processes, strict=True):
            role = name.rstrip("0123456789")
            out[role] = out.get(role, 0.0) + _process_cpu(process.pid)
        return out

    def stop(self) -> None:
        stop_servers(reversed(self.processes), self.logs)
        self.processes, self.names, self.logs = [], [], []

    def tail(self, lines: int = 15) -> str:
        out = []
        for path in sorted(self.logdir.glob("*.log")):
            text = path.read_text(errors="replace").splitlines()[-lines:]
            if text:
                out.append(f"--- {path.name}\n" + "\n".join(text))
        return "\n".join(out)


def _emulator(procs: Processes, senders: int) -> str:
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "sandbox.google:create_app", "--port", str(port)]
    process = procs.start("emulator", [*command, "--log-level", "warning", "--no-access-log"], _clean_env())
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/_emulator/state", process, "the Google emulator")
    httpx.put(f"{base}/_emulator/settings", json={"push_senders": senders, "channel_max_ttl": 8 * 24 * 3600})
    return base


def _command(template: str, port: int) -> list[str]:
    return shlex.split(template.format(python=shlex.quote(sys.executable), port=port))


# ---------------------------------------------------------------------------------------------
# setup: calendars, connections, channels, first mirror


def _settings(base: str, url: str, key: str, home: Path, queue: str | None = None) -> Any:
    from pydantic import SecretStr

    from alliance.settings import Settings
    from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    return Settings(
        home=home,
        database_url=url,
        master_key=SecretStr(key),
        timezone=ZONE,
        google_api_url=f"{base}/calendar/v3/",
        google_auth_url=f"{base}/o/oauth2/v2/auth",
        google_token_url=f"{base}/token",
        google_client_id=DEFAULT_CLIENT_ID,
        google_client_secret=SecretStr(DEFAULT_CLIENT_SECRET),
        sync_interval_minutes=24 * 60,  # the storm measures push; the reconciliation sweep stays out of it
        # The harness requests the first mirror's syncs: through the same queue the workers serve.
        queue=queue,
    )


def _env(base: str, url: str, key: str, home: Path, cfg: Config) -> dict[str, str]:
    from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    env = _clean_env()
    env.update(
        {
            "ALLIANCE_HOME": str(home),
            "ALLIANCE_DATABASE_URL": url,
            "ALLIANCE_MASTER_KEY": key,
            "ALLIANCE_TIMEZONE": ZONE,
            "ALLIANCE_GOOGLE_API_URL": f"{base}/calendar/v3/",
            "ALLIANCE_GOOGLE_AUTH_URL": f"{base}/o/oauth2/v2/auth",
            "ALLIANCE_GOOGLE_TOKEN_URL": f"{base}/token",
            "ALLIANCE_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "ALLIANCE_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "ALLIANCE_SYNC_INTERVAL_MINUTES": str(24 * 60),
        }
    )
    if cfg.poll_seconds is not None:
        env["ALLIANCE_WORKER_POLL_SECONDS"] = str(cfg.poll_seconds)
    env.update(STACKS[cfg.stack]["env"] if cfg.stack in STACKS else {})
    env.update(cfg.extra_env)
    return env


def _calendar_id(n: int) -> str:
    return f"bench-cal-{n:05d}"


def seed_calendars(base: str, cfg: Config, rng: random.Random, now: datetime) -> list[tuple[str, dict[str, datetime]]]:
    """One emulator calendar per connection with ``cfg.events`` timed single events in the next 60 days."""
    calendars = []
    with httpx.Client(base_url=f"{base}/_emulator", timeout=60) as http:
        for n in range(cfg.connections):
            cid = _calendar_id(n)
            http.post("/calendars", json={"id": cid, "timeZone": ZONE}).raise_for_status()
            bodies = []
            for k in range(cfg.events):
                start = (now + timedelta(days=rng.randint(1, 60))).replace(
                    hour=rng.randint(8, 19), minute=rng.choice((0, 30)), second=0, microsecond=0
                )
                bodies.append(
                    {
                        "summary": f"Session {k}",
                        "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
                        "end": {"dateTime": (start + timedelta(minutes=50)).isoformat(), "timeZone": ZONE},
                    }
                )
            made = http.post(f"/calendars/{cid}/events", json={"events": bodies})
            made.raise_for_status()
            events = {
                item["id"]: datetime.fromisoformat(item["start"]["dateTime"]).astimezone(UTC)
                for item in made.json()["items"]
            }
            calendars.append((cid, events))
    return calendars


def connect_all(store: Any, base: str, calendars: list[tuple[str, dict[str, datetime]]]) -> list[Conn]:
    """A therapist and a Google connection per calendar, stored as ``alliance connect google --token-file`` does."""
    from alliance.providers import registry
    from core.mirror import add_connection, ensure_therapist
    from sandbox.google import CALENDAR_SCOPE, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    tokens = httpx.post(f"{base}/_emulator/oauth/tokens", json={"scopes": [CALENDAR_SCOPE]}).json()
    raw = {
        "refresh_token": tokens["refresh_token"],
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "token": tokens["access_token"],
        "expiry": None,
    }
    provider = registry().get("google")
    conns = []
    for n, (cid, events) in enumerate(calendars):
        therapist = ensure_therapist(store, f"therapist{n:05d}@bench.example", timezone=ZONE)
        settings = provider.normalize_settings({**raw, "calendar_id": cid})
        conns.append(Conn(add_connection(store, therapist, "google", "google", settings), cid, dict(events)))
    return conns


def open_channels(store: Any, base: str, conns: list[Conn], addresses: list[str]) -> None:
    """An ``events.watch`` channel per connection (addresses taken in turn), recorded in the store."""
    from core.push import new_channel_token, record_channel
    from sandbox.google import CALENDAR_SCOPE

    access = httpx.post(f"{base}/_emulator/oauth/tokens", json={"scopes": [CALENDAR_SCOPE]}).json()["access_token"]
    expires = datetime.now(UTC) + timedelta(days=7)
    with httpx.Client(base_url=base, timeout=60, headers={"Authorization": f"Bearer {access}"}) as http:
        for n, conn in enumerate(conns):
            channel_id, token = f"bench-{conn.id}-{secrets.token_hex(8)}", new_channel_token()
            body = {
                "id": channel_id,
                "type": "web_hook",
                "address": f"{addresses[n % len(addresses)]}/webhooks/google",
                "token": token,
                "expiration": str(int(expires.timestamp() * 1000)),
            }
            opened = http.post(f"/calendar/v3/calendars/{urllib.parse.quote(conn.calendar)}/events/watch", json=body)
            opened.raise_for_status()
            record_channel(
                store,
                conn.id,
                "google",
                channel_id=channel_id,
                resource_id=opened.json()["resourceId"],
                token=token,
                expires_at=expires,
            )


def _backlog(store: Any) -> int:
    """Work not finished yet: queued or running jobs, outbox events not relayed, deliveries not done.

    Counted by what is left to do, not by ``outbox.processed_at``: on the procrastinate stack an
    event whose deliveries are all done is only stamped processed by the one-minute sweep, which
    would add up to a minute of bookkeeping to every drain.
    """
    from sqlalchemy import func, select, text

    from core.jobs.models import OutboxDelivery, QueuedJob
    from core.store.models import OutboxEvent

    with store.session() as session:
        jobs = session.scalar(
            select(func.count()).select_from(QueuedJob).where(QueuedJob.status.in_(("pending", "running")))
        )
        unrelayed = session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.relayed_at.is_(None))
        )
        deliveries = session.scalar(
            select(func.count()).select_from(OutboxDelivery).where(OutboxDelivery.status.in_(("pending", "running")))
        )
        queued = 0
        if _has_procrastinate(session):
            # The procrastinate stack's own queue (ALLIANCE_QUEUE=procrastinate): its waiting and
            # running jobs. Jobs scheduled later (a backoff, the next periodic tick) are not backlog.
            queued = session.scalar(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'doing' "
                    "OR (status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now()))"
                )
            )
    return int(jobs or 0) + int(unrelayed or 0) + int(deliveries or 0) + int(queued or 0)


def _has_procrastinate(session: Any) -> bool:
    from sqlalchemy import text

    return bool(session.scalar(text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")))


def first_mirror(store: Any, settings: Any, conns: list[Conn], timeout: float) -> float:
    """A sync requested for every connection, run by the worker processes; seconds until all done."""
    from sqlalchemy import func, select

    from alliance.jobs import build_registry
    from alliance.reconcile import request_sync
    from core.store.models import Occurrence

    registry = build_registry(settings)
    started = time.perf_counter()
    now = datetime.now(UTC)
    for conn in conns:
        request_sync(store, registry, conn.id, now)
    expected = sum(len(c.events) for c in conns)
    deadline = time.monotonic() + timeout
    while True:
        with store.session() as session:
            mirrored = session.scalar(select(func.count()).select_from(Occurrence))
        if mirrored == expected and _backlog(store) == 0:
            return time.perf_counter() - started
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"first mirror incomplete after {timeout:.0f} s: {mirrored}/{expected} occurrences, "
                f"{_backlog(store)} jobs or deliveries left"
            )
        time.sleep(0.5)


# ---------------------------------------------------------------------------------------------
# the storm and its observers


def zipf_weights(count: int, skew: float) -> list[float]:
    """Weight of the k-th busiest connection ~ 1 / k**skew (skew 0: uniform)."""
    return [1.0 / (k**skew) for k in range(1, count + 1)]


@dataclass
class Edit:
    conn: Conn
    event_id: str
    new_start: datetime
    sent: float  # time.time() just before the move was posted
    stamped: float = 0.0  # the emulator's ``updated`` of the move (its commit time)
    mirrored: float | None = None


class MirrorWatcher(threading.Thread):
    """Polls the store every ``interval`` s and stamps each edit when its new start is mirrored."""

    def __init__(self, store: Any, interval: float = 0.02) -> None:
        super().__init__(name="mirror-watcher", daemon=True)
        self.store = store
        self.interval = interval
        self.pending: dict[tuple[int, str], Edit] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.polls = 0  # transactions the watcher ran (left out of the database's count)

    def add(self, edit: Edit) -> None:
        with self.lock:
            self.pending[(edit.conn.id, edit.event_id)] = edit

    def busy(self, conn_id: int, event_id: str) -> bool:
        with self.lock:
            return (conn_id, event_id) in self.pending

    def outstanding(self) -> int:
        with self.lock:
            return len(self.pending)

    def run(self) -> None:
        from sqlalchemy import Integer, String, any_, bindparam, select
        from sqlalchemy.dialects.postgresql import ARRAY

        from core.store.models import Occurrence

        # Two arrays, one parameter each, not a row-value IN: PostgreSQL compared every row of the
        # table with each of ~1,000 (connection, event) pairs on every poll; and two IN lists of
        # ~1,000 bound values each cost the harness more CPU than some roles it measures (2,000
        # placeholders rendered and adapted 50 times a second). Rows matching both arrays but not
        # a pending pair are left out below.
        query = select(Occurrence.connection_id, Occurrence.provider_id, Occurrence.start_utc).where(
            Occurrence.connection_id == any_(bindparam("connections", type_=ARRAY(Integer))),
            Occurrence.provider_id == any_(bindparam("events", type_=ARRAY(String))),
        )
        while not self.stop.wait(self.interval):
            with self.lock:
                keys = list(self.pending)
            if not keys:
                continue
            params = {
                "connections": list({connection_id for connection_id, _ in keys}),
                "events": list({provider_id for _, provider_id in keys}),
            }
            with self.store.session() as session:
                rows = session.execute(query, params).all()
            self.polls += 1
            seen = time.time()
            with self.lock:
                for connection_id, provider_id, start in rows:
                    edit = self.pending.get((connection_id, provider_id))
                    if edit is not None and start == edit.new_start:
                        edit.mirrored = seen
                        del self.pending[(connection_id, provider_id)]


class ConnectionSampler(threading.Thread):
    """``pg_stat_activity`` rows of the benchmark database (the harness's own left out), every ``interval`` s."""

    def __init__(self, admin_url: str, database: str, interval: float = 0.5) -> None:
        super().__init__(name="pg-sampler", daemon=True)
        from sqlalchemy import create_engine

        self.engine = create_engine(admin_url, pool_size=1)
        self.database = database
        self.interval = interval
        self.samples: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        from sqlalchemy import text

        query = text("SELECT count(*) FROM pg_stat_activity WHERE datname = :db AND application_name <> :harness")
        with self.engine.connect() as conn:
            while not self.stop.wait(self.interval):
                count = conn.execute(query, {"db": self.database, "harness": HARNESS_APP}).scalar_one()
                self.samples.append(int(count))
        self.engine.dispose()


_STATS = ("xact_commit", "xact_rollback", "tup_inserted", "tup_updated", "tup_deleted", "tup_returned")
# PostgreSQL 15+ backends flush their statistics at most every second, an idle one after 10 s.
STATS_FLUSH_SECONDS = 11.0


def db_stats(admin_url: str, database: str) -> dict[str, int]:
    """The cumulative counters of ``pg_stat_database`` for the benchmark database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(
                text(f"SELECT {', '.join(_STATS)} FROM pg_stat_database WHERE datname = :db"), {"db": database}
            ).one()
    finally:
        engine.dispose()
    return {name: int(value or 0) for name, value in zip(_STATS, row, strict=True)}


def commit_floor(url: str, threads: int, seconds: float = 3.0) -> float:
    """The floor: bare psycopg, ``threads`` connections each inserting one row per transaction; commits/s.

    What this PostgreSQL on this machine sustains for the smallest write transaction; the storm's
    transactions per job divided into it bound the jobs/s one primary can take.
    """
    import psycopg
    from sqlalchemy.engine import make_url

    sa = make_url(url)
    dsn = f"host={sa.host} port={sa.port or 5432} user={sa.username} dbname={sa.database}"
    if sa.password:
        dsn += f" password={sa.password}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS load_floor (id bigserial PRIMARY KEY, at timestamptz, note text)")
    counts = [0] * threads
    stop = time.monotonic() + seconds

    def loop(n: int) -> None:
        with psycopg.connect(dsn) as conn:
            while time.monotonic() < stop:
                conn.execute("INSERT INTO load_floor (at, note) VALUES (now(), %s)", ("x" * 40,))
                conn.commit()
                counts[n] += 1

    workers = [threading.Thread(target=loop, args=(n,)) for n in range(threads)]
    started = time.monotonic()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.monotonic() - started
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("DROP TABLE load_floor")
    return sum(counts) / elapsed


def _rfc3339_epoch(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def storm(base: str, conns: list[Conn], cfg: Config, rng: random.Random, watcher: MirrorWatcher) -> dict[str, Any]:
    """Send the pings and the edits on their schedules (two threads); returns what was sent."""
    weights = zipf_weights(len(conns), cfg.skew)
    order = conns[:]
    rng.shuffle(order)  # which connections are the busy ones: random, not the first ids
    ping_targets = rng.choices(order, weights=weights, k=cfg.pings)
    ping_times = sorted(rng.uniform(0, cfg.seconds) for _ in range(cfg.pings))
    edit_targets = rng.choices(order, weights=weights, k=cfg.edits)
    edit_times = sorted(rng.uniform(0, cfg.seconds) for _ in range(cfg.edits))
    edits: list[Edit] = []
    sent = {"pings": 0, "ping_messages": 0, "edits_skipped": 0}
    start = time.monotonic()
    tick = 0.05

    def send_pings() -> None:
        with httpx.Client(base_url=f"{base}/_emulator", timeout=60) as http:
            i = 0
            while i < len(ping_times):
                due = time.monotonic() - start
                j = bisect.bisect_right(ping_times, due, lo=i)
                if j > i:
                    batch = [c.calendar for c in ping_targets[i:j]]
                    answer = http.post("/push/ping", json={"calendarIds": batch})
                    answer.raise_for_status()
                    sent["pings"] += len(batch)
                    sent["ping_messages"] += answer.json()["sent"]
                    i = j
                time.sleep(tick)

    def send_edits() -> None:
        with httpx.Client(base_url=f"{base}/_emulator", timeout=60) as http:
            for at, conn in zip(edit_times, edit_targets, strict=True):
                pause = at - (time.monotonic() - start)
                if pause > 0:
                    time.sleep(pause)
                free = [e for e in conn.events if not watcher.busy(conn.id, e)]
                if not free:  # every event of this calendar still has an edit in flight
                    sent["edits_skipped"] += 1
                    continue
                event_id = rng.choice(free)
                new_start = conn.events[event_id] + timedelta(hours=rng.choice((-3, -2, -1, 1, 2, 3)))
                edit = Edit(conn, event_id, new_start, time.time())
                watcher.add(edit)
                moved = http.post(
                    f"/calendars/{conn.calendar}/events/{event_id}/move",
                    json={"start": {"dateTime": new_start.isoformat(), "timeZone": ZONE}},
                )
                moved.raise_for_status()
                edit.stamped = _rfc3339_epoch(moved.json()["updated"])
                conn.events[event_id] = new_start
                edits.append(edit)

    threads = [threading.Thread(target=send_pings), threading.Thread(target=send_edits)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {**sent, "edits": edits, "elapsed": time.monotonic() - start}


def changed_pages(requests: list[dict[str, Any]], edits: list[Edit], latency: float) -> tuple[int, int]:
    """(list requests, those that could see an edit made since the calendar's previous list).

    A list request reads the calendar ``latency`` seconds after it arrived (the emulator's delay
    comes first); it sees every edit committed before that.
    """
    by_calendar: dict[str, list[float]] = {}
    for r in requests:
        parts = r["path"].split("/")  # /calendar/v3/calendars/{id}/events
        if r["method"] == "GET" and len(parts) == 6 and parts[5] == "events":
            by_calendar.setdefault(urllib.parse.unquote(parts[4]), []).append(r["at"] + latency)
    edit_times: dict[str, list[float]] = {}
    for e in edits:
        edit_times.setdefault(e.conn.calendar, []).append(e.stamped)
    total = changed = 0
    for calendar, reads in by_calendar.items():
        reads.sort()
        stamps = sorted(edit_times.get(calendar, []))
        previous = float("-inf")
        for read in reads:
            total += 1
            if bisect.bisect_right(stamps, read) > bisect.bisect_right(stamps, previous):
                changed += 1
            previous = read
    return total, changed


def _jobs_finished(store: Any, since: datetime) -> tuple[int, int]:
    """(sync jobs, other jobs + outbox deliveries) created since ``since`` and finished.

    The storm starts with no work left (``_backlog`` is 0), so this is exactly the storm's work.
    """
    from sqlalchemy import func, select, text

    from core.jobs.models import OutboxDelivery, QueuedJob

    done = QueuedJob.done_at.is_not(None)
    with store.session() as session:
        syncs = session.scalar(
            select(func.count()).where(QueuedJob.created_at >= since, done, QueuedJob.job == SYNC_JOB)
        )
        others = session.scalar(
            select(func.count()).where(QueuedJob.created_at >= since, done, QueuedJob.job != SYNC_JOB)
        )
        deliveries = session.scalar(
            select(func.count()).where(OutboxDelivery.created_at >= since, OutboxDelivery.done_at.is_not(None))
        )
        if _has_procrastinate(session):
            # On the procrastinate stack jobs live in its table; a job's deferral time is its
            # 'deferred' event. Outbox deliveries are already counted above (their rows), so their
            # carrier tasks (one per event, or per delivery before session 14) are not counted twice.
            finished = text(
                "SELECT count(*) FROM procrastinate_jobs j WHERE j.status IN ('succeeded', 'failed') "
                "AND j.task_name {op} :sync AND j.task_name NOT IN ('outbox.deliver', 'outbox.deliver_event') "
                "AND EXISTS ("
                "SELECT 1 FROM procrastinate_events e WHERE e.job_id = j.id AND e.type = 'deferred' AND e.at >= :since)"
            )
            params = {"sync": SYNC_JOB, "since": since}
            syncs = int(syncs or 0) + int(session.scalar(text(finished.text.format(op="=")), params) or 0)
            others = int(others or 0) + int(session.scalar(text(finished.text.format(op="<>")), params) or 0)
    return int(syncs or 0), int(others or 0) + int(deliveries or 0)


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------------
# one run


def run(cfg: Config, *, log: Any = print) -> dict[str, Any]:
    """Set everything up, storm, measure, tear down; the figures of one run (see the module doc)."""
    from sqlalchemy.engine import make_url

    from alliance.keys import open_store

    rng = random.Random(cfg.seed)
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="alliance-load-")))
        url = stack.enter_context(scratch_database(cfg.admin_url))
        procs = Processes(tmp)
        stack.callback(procs.stop)
        try:
            base = _emulator(procs, cfg.push_senders)
            # The harness's own connections (watcher, backlog polls) carry a name the sampler leaves out.
            stack_env = {**(STACKS[cfg.stack]["env"] if cfg.stack in STACKS else {}), **cfg.extra_env}
            settings = _settings(
                base, f"{url}?application_name={HARNESS_APP}", key, tmp / "harness", stack_env.get("ALLIANCE_QUEUE")
            )
            store = open_store(settings)  # migrates the scratch database
            stack.callback(store.close)
            t0 = time.perf_counter()
            calendars = seed_calendars(base, cfg, rng, datetime.now(UTC))
            conns = connect_all(store, base, calendars)
            log(f"  {len(conns)} connections stored in {time.perf_counter() - t0:.1f} s")
            env = _env(base, url, key, tmp, cfg)
            web_urls = []
            for n in range(cfg.web):
                port = free_port()
                web_urls.append(f"http://127.0.0.1:{port}")
                web_env = {**env, "ALLIANCE_HOME": str(tmp / f"web{n}"), "ALLIANCE_PUBLIC_URL": web_urls[-1]}
                process = procs.start(f"web{n}", _command(cfg.web_cmd or STACKS[cfg.stack]["web"], port), web_env)
                _wait_http(f"{web_urls[-1]}/healthz", process, f"web process {n}")
            for n in range(cfg.workers):
                worker_env = {**env, "ALLIANCE_HOME": str(tmp / f"worker{n}")}
                worker_cmd = _command(cfg.worker_cmd or STACKS[cfg.stack]["worker"], free_port())
                procs.start(f"worker{n}", worker_cmd, worker_env)
            t0 = time.perf_counter()
            open_channels(store, base, conns, web_urls)
            log(f"  {len(conns)} push channels opened in {time.perf_counter() - t0:.1f} s")
            # The first mirror's outbox (every occurrence created: its deliveries) drains before the
            # storm; at 2,000 calendars that alone is ~20,000 jobs, beyond the storm's drain limit.
            mirror_timeout = max(cfg.drain_timeout, 0.5 * cfg.connections * max(cfg.events, 1))
            mirror_seconds = first_mirror(store, settings, conns, mirror_timeout)
            log(f"  first mirror by {cfg.workers} worker(s) in {mirror_seconds:.1f} s")

            httpx.put(f"{base}/_emulator/settings", json={"latency": cfg.latency})
            httpx.delete(f"{base}/_emulator/requests")
            deliveries_before = len(httpx.get(f"{base}/_emulator/push/deliveries?wait=1", timeout=60).json()["items"])
            database = str(make_url(url).database)
            watcher = MirrorWatcher(store)
            sampler = ConnectionSampler(cfg.admin_url, database)
            time.sleep(STATS_FLUSH_SECONDS)  # the setup's statistics settle before the first reading
            stats_before = db_stats(cfg.admin_url, database)
            watcher.start()
            sampler.start()
            storm_start = datetime.now(UTC)
            storm_started = time.time()
            cpu_before, machine_before = procs.cpu_seconds(), _machine_cpu()
            pg_before, harness_before = _postgres_cpu(), time.process_time()
            sent = storm(base, conns, cfg, rng, watcher)
            log(f"  storm sent in {sent['elapsed']:.1f} s; draining")
            deadline = time.monotonic() + cfg.drain_timeout
            backlog_polls = 0
            # Every push handed over first (a delivered ping has its sync request committed), then
            # until no work is left and every edit is in the mirror.
            httpx.get(f"{base}/_emulator/push/deliveries?wait=1", timeout=60)
            while time.monotonic() < deadline:
                backlog_polls += 1  # one transaction each
                if not _backlog(store) and not watcher.outstanding():
                    break
                time.sleep(0.1)
            drained = time.time()
            cpu_after, machine_after = procs.cpu_seconds(), _machine_cpu()
            pg_after, harness_after = _postgres_cpu(), time.process_time()
            watcher.stop.set()
            sampler.stop.set()
            watcher.join()
            sampler.join()
            time.sleep(STATS_FLUSH_SECONDS)
            stats_after = db_stats(cfg.admin_url, database)
            deliveries = httpx.get(f"{base}/_emulator/push/deliveries?wait=1", timeout=60).json()["items"]
            storm_deliveries = [d for d in deliveries[deliveries_before:] if d["resource_state"] == "exists"]
            requests = httpx.get(f"{base}/_emulator/requests", params={"path": "/calendar/v3/"}, timeout=60).json()[
                "items"
            ]
            syncs, other_jobs = _jobs_finished(store, storm_start)
        except BaseException:
            log(procs.tail())
            raise

    edits: list[Edit] = sent["edits"]
    latencies = sorted(e.mirrored - e.sent for e in edits if e.mirrored is not None)
    lists, changed = changed_pages(requests, edits, cfg.latency)
    delivered = sum(1 for d in storm_deliveries if d["delivered"])
    busy_seconds = drained - storm_started
    jobs = syncs + other_jobs
    delta = {name: stats_after[name] - stats_before[name] for name in _STATS}
    # Less the harness's own transactions in the window: the watcher's polls and the backlog checks.
    app_transactions = delta["xact_commit"] + delta["xact_rollback"] - watcher.polls - backlog_polls
    return {
        "workers": cfg.workers,
        "web": cfg.web,
        "stack": cfg.stack,
        "connections": len(conns),
        "first_mirror_s": mirror_seconds,
        "storm_s": sent["elapsed"],
        "drain_s": drained - storm_started - sent["elapsed"],
        "pings_sent": sent["pings"] + len(edits),
        "pushes_delivered": delivered,
        "pushes_failed": len(storm_deliveries) - delivered,
        "edits": len(edits),
        "edits_skipped": sent["edits_skipped"],
        "edits_mirrored": len(latencies),
        "latency_p50_s": _percentile(latencies, 0.5),
        "latency_p99_s": _percentile(latencies, 0.99),
        "latency_max_s": latencies[-1] if latencies else float("nan"),
        "syncs": syncs,
        "syncs_per_push": syncs / delivered if delivered else float("nan"),
        "list_requests": lists,
        "changed_pages": changed,
        "lists_per_changed_page": lists / changed if changed else float("nan"),
        "api_requests": len(requests),
        "jobs": jobs,
        "jobs_per_s": jobs / busy_seconds if busy_seconds > 0 else float("nan"),
        "syncs_per_s": syncs / busy_seconds if busy_seconds > 0 else float("nan"),
        "busy_s": busy_seconds,
        "pg_transactions": app_transactions,
        "pg_transactions_per_job": app_transactions / jobs if jobs else float("nan"),
        "pg_rows_written": delta["tup_inserted"] + delta["tup_updated"] + delta["tup_deleted"],
        "pg_connections_max": max(sampler.samples, default=0),
        "pg_connections_mean": statistics.fmean(sampler.samples) if sampler.samples else 0.0,
        # CPU seconds over the same window (storm start -> all done), per role, and how busy the
        # machine's cores were: tells a worker count that is short of CPU from one that waits.
        "cpu_s": {role: cpu_after[role] - cpu_before.get(role, 0.0) for role in cpu_after}
        | {"postgresql": pg_after - pg_before, "harness": harness_after - harness_before},
        "machine_busy": (machine_after[0] - machine_before[0]) / max(machine_after[1] - machine_before[1], 1e-9),
    }


# ---------------------------------------------------------------------------------------------
# command line


ROWS: tuple[tuple[str, Callable[[dict[str, Any]], str]], ...] = (
    ("edits mirrored", lambda r: f"{r['edits_mirrored']}/{r['edits']}"),
    ("edit -> mirror p50", lambda r: f"{r['latency_p50_s']:.2f} s"),
    ("edit -> mirror p99 (target <= 5 s)", lambda r: f"{r['latency_p99_s']:.2f} s"),
    ("pushes delivered (failed)", lambda r: f"{r['pushes_delivered']} ({r['pushes_failed']})"),
    ("syncs executed", lambda r: f"{r['syncs']}"),
    ("syncs per push (coalescing)", lambda r: f"{r['syncs_per_push']:.3f}"),
    ("list requests / changed pages", lambda r: f"{r['list_requests']} / {r['changed_pages']}"),
    ("list requests per changed page (target <= 1.1)", lambda r: f"{r['lists_per_changed_page']:.2f}"),
    ("jobs finished (syncs + other jobs and deliveries)", lambda r: f"{r['jobs']}"),
    ("jobs/s sustained (storm start -> all work done)", lambda r: f"{r['jobs_per_s']:.1f} ({r['busy_s']:.1f} s)"),
    ("syncs/s", lambda r: f"{r['syncs_per_s']:.1f}"),
    ("drain after the storm", lambda r: f"{r['drain_s']:.1f} s"),
    ("PostgreSQL connections max / mean", lambda r: f"{r['pg_connections_max']} / {r['pg_connections_mean']:.1f}"),
    ("PostgreSQL transactions per job (webhooks included)", lambda r: f"{r['pg_transactions_per_job']:.1f}"),
    ("first mirror (setup)", lambda r: f"{r['first_mirror_s']:.1f} s"),
    ("CPU s during the window: workers / web / emulator / PostgreSQL / harness", lambda r: _cpu_row(r)),
    ("worker CPU per job", lambda r: _per_job(r["cpu_s"].get("worker", 0.0), r["jobs"])),
    ("machine's cores busy (all processes, PostgreSQL included)", lambda r: f"{100 * r['machine_busy']:.0f} %"),
)


def _per_job(seconds: float, jobs: int) -> str:
    return f"{1000 * seconds / jobs:.1f} ms" if jobs else "-"


def _cpu_row(r: dict[str, Any]) -> str:
    cpu = r["cpu_s"]
    roles = ("worker", "web", "emulator", "postgresql", "harness")
    return " / ".join(f"{cpu.get(role, 0.0):.1f}" for role in roles)


def table(results: list[dict[str, Any]]) -> str:
    head = "| measure | " + " | ".join(f"{r['workers']} worker(s)" for r in results) + " |"
    lines = [head, "|---" * (len(results) + 1) + "|"]
    for name, fmt in ROWS:
        lines.append(f"| {name} | " + " | ".join(fmt(r) for r in results) + " |")
    return "\n".join(lines)


# reference/scale.md section 8: ~42 jobs per connection per day (26 sync/write + 10 reminders +
# 5-6 ratings/alerts), 15 % of a day's traffic in its busiest hour.
JOBS_PER_THERAPIST_DAY = 42
FLOOR_CONNECTIONS = 16
PEAK_HOUR_SHARE = 0.15


def project(results: list[dict[str, Any]], floor: float) -> dict[str, Any]:
    """Therapists one PostgreSQL primary serves, from transactions per job and the commit floor."""
    peak_jobs_per_therapist_s = JOBS_PER_THERAPIST_DAY * PEAK_HOUR_SHARE / 3600
    best = max(results, key=lambda r: r["jobs_per_s"])
    tx_per_job = best["pg_transactions_per_job"]
    primary_jobs_s = floor / tx_per_job if tx_per_job > 0 else float("nan")
    measured_therapists = best["jobs_per_s"] / peak_jobs_per_therapist_s
    primary_therapists = primary_jobs_s / peak_jobs_per_therapist_s
    return {
        "peak_jobs_per_therapist_s": peak_jobs_per_therapist_s,
        "transactions_per_job": tx_per_job,
        "primary_jobs_per_s": primary_jobs_s,
        "therapists_at_measured_jobs_s": measured_therapists,
        "therapists_per_primary": primary_therapists,
        "lines": [
            f"projection: {JOBS_PER_THERAPIST_DAY} jobs/therapist/day, {PEAK_HOUR_SHARE:.0%} in the peak hour "
            f"= {peak_jobs_per_therapist_s * 1000:.2f} jobs/s per 1,000 therapists at peak",
            f"  this stack as measured ({best['workers']} workers, {best['jobs_per_s']:.1f} jobs/s): "
            f"~{measured_therapists:,.0f} therapists",
            f"  the primary: {floor:.0f} commits/s floor / {tx_per_job:.1f} transactions per job = "
            f"{primary_jobs_s:.0f} jobs/s = ~{primary_therapists:,.0f} therapists (workers on other machines)",
        ],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.load_storm", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help=f"a small configuration ({QUICK}), 2-3 minutes")
    p.add_argument("--connections", type=int)
    p.add_argument("--pings", type=int, help="pings with no change behind them")
    p.add_argument("--edits", type=int, help="event moves, each followed by its own push")
    p.add_argument("--seconds", type=float, help="length of the storm")
    p.add_argument("--events", type=int, help="events per calendar")
    p.add_argument("--workers", type=int, nargs="+", default=[3, 1], help="worker counts, one run each")
    p.add_argument("--web", type=int, default=2, help="web processes (pings are spread over them)")
    p.add_argument("--latency", type=float, default=0.1, help="emulator delay per API request, seconds")
    p.add_argument("--skew", type=float, default=1.0, help="Zipf exponent of pings and edits over connections")
    p.add_argument("--push-senders", type=int, default=8, help="emulator threads delivering pushes")
    p.add_argument("--stack", choices=sorted(STACKS), default="split", help="which process commands (see STACKS)")
    p.add_argument("--web-cmd", help="web process command ({python}, {port}); overrides --stack")
    p.add_argument("--worker-cmd", help="worker process command ({python}, {port}); overrides --stack")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE", help="extra variable for every process")
    p.add_argument("--poll-seconds", type=float, help="ALLIANCE_WORKER_POLL_SECONDS (default: the product's)")
    p.add_argument("--postgres", default=os.environ.get("ALLIANCE_TEST_POSTGRES_URL", DEFAULT_ADMIN_URL))
    p.add_argument("--seed", type=int, default=9)
    p.add_argument("--json", type=Path, help="write the results here")
    p.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    return p.parse_args(argv)


def configs(args: argparse.Namespace) -> list[Config]:
    size = dict(QUICK if args.quick else FULL)
    for name in size:
        if getattr(args, name) is not None:
            size[name] = getattr(args, name)
    extra = dict(item.split("=", 1) for item in args.env)
    return [
        Config(
            connections=int(size["connections"]),
            pings=int(size["pings"]),
            edits=int(size["edits"]),
            seconds=float(size["seconds"]),
            events=int(size["events"]),
            workers=workers,
            web=args.web,
            latency=args.latency,
            skew=args.skew,
            push_senders=args.push_senders,
            stack=args.stack,
            web_cmd=args.web_cmd,
            worker_cmd=args.worker_cmd,
            extra_env=extra,
            poll_seconds=args.poll_seconds,
            admin_url=args.postgres,
            seed=args.seed,
        )
        for workers in args.workers
    ]


def _interrupted(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds through every cleanup: processes stopped, database dropped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupted)
    results = []
    for cfg in configs(args):
        print(
            f"run: {cfg.workers} worker(s), {cfg.web} web, stack {cfg.stack}; {cfg.connections} connections, "
            f"{cfg.pings} pings + {cfg.edits} edits over {cfg.seconds:.0f} s, latency {cfg.latency * 1000:.0f} ms",
            flush=True,
        )
        results.append(run(cfg, log=lambda msg: print(msg, flush=True)))
    with scratch_database(args.postgres) as url:
        serial = commit_floor(url, threads=1)
        floor = commit_floor(url, threads=FLOOR_CONNECTIONS)
    print(
        f"floor: bare psycopg, one-row insert per transaction: {serial:.0f} commits/s on 1 connection "
        f"({1000 / serial:.1f} ms each), {floor:.0f} commits/s on {FLOOR_CONNECTIONS} (group commit)"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"\nPython {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.1f}")
    print(table(results))
    checks: dict[str, bool] = {}
    for r in results:
        w = r["workers"]
        checks[f"{w} worker(s): every edit mirrored"] = r["edits_mirrored"] == r["edits"]
        checks[f"{w} worker(s): p99 <= 5 s"] = r["latency_p99_s"] <= 5.0
        checks[f"{w} worker(s): <= 1.1 list requests per changed page"] = r["lists_per_changed_page"] <= 1.1
    by_workers = {r["workers"]: r for r in results}
    scaling = None
    if 1 in by_workers and len(by_workers) > 1:
        most = max(by_workers)
        scaling = by_workers[most]["jobs_per_s"] / by_workers[1]["jobs_per_s"]
        print(f"scaling: {most} workers / 1 worker = {scaling:.2f}x jobs/s")
        checks[f"{most} workers >= 2.5x one worker"] = scaling >= 2.5
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    projection = project(results, floor)
    for line in projection["lines"]:
        print(line)
    if args.json:
        payload = {
            "config": [asdict(c) for c in configs(args)],
            "results": results,
            "scaling": scaling,
            "checks": checks,
            "floor_commits_per_s": {"1": serial, str(FLOOR_CONNECTIONS): floor},
            "projection": projection,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        }
        args.json.write_text(json.dumps(payload, indent=2, default=str))
    return 0 if (all(checks.values()) or not args.check) else 1


if __name__ == "__main__":
    raise SystemExit(main())
