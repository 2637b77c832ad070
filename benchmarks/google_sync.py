"""Google sync benchmark: Alliance's Google mirror against the bare client library, side by side.

One run against the Google emulator (``sandbox/google``, served by uvicorn in its own process so
it does not share the benchmark's interpreter lock) holding a 10,000-event calendar:

    (a) floor        the bare google-api-python-client paging ``events.list`` over the sync window
                     with ``maxResults=2500`` (the same parameters Alliance sends), items materialised
    (b) full mirror  ``GoogleProvider`` + ``sync_connection`` into an empty SQLite mirror
    (c) no change    the incremental sync that follows (sync token): API requests counted
    (d) push         an edit through the emulator -> ping -> ``/webhooks/google`` on Alliance's real
                     app (uvicorn) -> coalesced sync by the embedded worker -> the new start in the
                     mirror; latency per edit, p50 / p99

Targets (issue 4): (b) <= 1.3x (a); (c) exactly 1 request; requests of a full sync = pages;
(d) p50 <= 1 s, p99 <= 3 s. ``python -m benchmarks.google_sync --help``; the figures of the last
run are in ``benchmarks/README.md``. The process tunes its garbage collector after its imports as
``alliance sync`` and ``alliance serve`` do (alliance/gc_tuning.py; ``--default-gc`` does not).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from sandbox.listen import listen_tcp

REPO_ROOT = Path(__file__).resolve().parent.parent
ZONE = "Europe/Madrid"
EVENTS_PATH = "/calendar/v3/calendars/primary/events"
SCOPE = "https://www.googleapis.com/auth/calendar.events"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def emulator_process() -> Iterator[str]:
    """The Google emulator under uvicorn in a child process; yields its base URL."""
    with emulator_child() as (base, _process):
        yield base


@contextmanager
def emulator_child(tls: tuple[Path, Path] | None = None, *extra: str) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """:func:`emulator_process` with more uvicorn options, over TLS with ``tls`` (key, certificate);
    yields the base URL and the process."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    command = [sys.executable, "-m", "uvicorn", "--factory", "sandbox.google:create_app", "--port", str(port)]
    command += ["--log-level", "warning", "--no-access-log", *extra]
    if tls is not None:
        command += ["--ssl-keyfile", str(tls[0]), "--ssl-certfile", str(tls[1])]
    process = subprocess.Popen(command, cwd=REPO_ROOT, env=env)
    base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/_emulator/state", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the Google emulator did not start")
            time.sleep(0.05)
        yield base, process
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:  # still waiting for kept-alive connections to close
            process.kill()
            process.wait(timeout=5)


@dataclass
class Calendar:
    base: str
    client_id: str
    client_secret: str
    tokens: dict[str, Any]
    ids: list[str] = field(default_factory=list)
    starts: dict[str, datetime] = field(default_factory=dict)

    @property
    def control(self) -> str:
        return f"{self.base}/_emulator"

    def requests(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = httpx.get(
            f"{self.control}/requests", params={"path": EVENTS_PATH, "method": "GET"}
        ).json()["items"]
        return items

    def clear_requests(self) -> None:
        httpx.delete(f"{self.control}/requests")


def seed(base: str, count: int, rng: random.Random, now: datetime) -> Calendar:
    """``count`` synthetic single events over the next 300 days (timed, Madrid), 1,000 per request."""
    from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    tokens = httpx.post(f"{base}/_emulator/oauth/tokens", json={"scopes": [SCOPE]}).json()
    calendar = Calendar(base, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, tokens)
    bodies = []
    for n in range(count):
        day = now + timedelta(days=rng.randint(1, 300))
        start = day.replace(hour=rng.randint(8, 19), minute=rng.choice((0, 15, 30, 45)), second=0, microsecond=0)
        end = start + timedelta(minutes=50)
        bodies.append(
            {
                "summary": f"Session {n}",
                "description": "Synthetic benchmark event",
                "start": {"dateTime": start.isoformat(), "timeZone": ZONE},
                "end": {"dateTime": end.isoformat(), "timeZone": ZONE},
            }
        )
    with httpx.Client(timeout=120) as http:
        for chunk in range(0, count, 1000):
            made = http.post(
                f"{base}/_emulator/calendars/primary/events", json={"events": bodies[chunk : chunk + 1000]}
            )
            made.raise_for_status()
            for item in made.json()["items"]:
                calendar.ids.append(item["id"])
                calendar.starts[item["id"]] = datetime.fromisoformat(item["start"]["dateTime"]).astimezone(UTC)
    return calendar


def _rfc3339(moment: datetime, *, round_up: bool = False) -> str:
    whole = moment.astimezone(UTC).replace(microsecond=0)
    if round_up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.isoformat().replace("+00:00", "Z")


def floor(calendar: Calendar, window: tuple[datetime, datetime]) -> dict[str, Any]:
    """(a) The bare client: build the service, page through the window, keep every item."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build

    started, cpu = time.perf_counter(), time.process_time()
    credentials = Credentials(
        token=calendar.tokens["access_token"],
        refresh_token=calendar.tokens["refresh_token"],
        token_uri=f"{calendar.base}/token",
        client_id=calendar.client_id,
        client_secret=calendar.client_secret,
    )
    service = build(
        "calendar",
        "v3",
        credentials=credentials,
        client_options={"api_endpoint": f"{calendar.base}/calendar/v3/"},
        static_discovery=True,
        cache_discovery=False,
    )
    items: list[dict[str, Any]] = []
    pages = 0
    token: str | None = None
    while True:
        page = (
            service.events()
            .list(
                calendarId="primary",
                singleEvents=True,
                maxResults=2500,
                eventTypes=["default"],
                timeMin=_rfc3339(window[0]),
                timeMax=_rfc3339(window[1], round_up=True),
                pageToken=token,
            )
            .execute()
        )
        pages += 1
        items.extend(page.get("items", []))
        token = page.get("nextPageToken")
        if not token:
            break
    return {
        "seconds": time.perf_counter() - started,
        "cpu": time.process_time() - cpu,
        "items": len(items),
        "pages": pages,
    }


def _settings(calendar: Calendar, home: Path, public_url: str | None = None) -> Any:
    from pydantic import SecretStr

    from alliance.settings import Settings

    return Settings(
        home=home,
        timezone=ZONE,
        google_api_url=f"{calendar.base}/calendar/v3/",
        google_auth_url=f"{calendar.base}/o/oauth2/v2/auth",
        google_token_url=f"{calendar.base}/token",
        google_client_id=calendar.client_id,
        google_client_secret=SecretStr(calendar.client_secret),
        public_url=public_url,
        sync_interval_minutes=24 * 60,  # (d) must measure push, not the reconciliation
    )


def _store(home: Path) -> Any:
    from alliance.keys import open_store

    home.mkdir(parents=True, exist_ok=True)
    return open_store(_settings_stub(home))


def _settings_stub(home: Path) -> Any:
    from alliance.settings import Settings

    return Settings(home=home, timezone=ZONE)


def connected(calendar: Calendar, home: Path) -> tuple[Any, Any, int, dict[str, Any]]:
    """A new store in ``home`` with the calendar connected: (settings, store, connection id, the
    connection's settings, which every sync's provider is built from)."""
    from core.mirror import add_connection, ensure_therapist

    settings = _settings(calendar, home)
    store = _store(home)
    therapist = ensure_therapist(store, "bench@example.org", timezone=ZONE)
    raw = {
        "refresh_token": calendar.tokens["refresh_token"],
        "token": calendar.tokens["access_token"],
        "client_id": calendar.client_id,
    }
    return settings, store, add_connection(store, therapist, "google", "google", raw), raw


def mirror_runs(calendar: Calendar, home: Path) -> tuple[dict[str, Any], dict[str, Any], Any, int]:
    """(b) a full mirror into an empty store, then (c) the incremental sync with no change."""
    from alliance.providers import context_for
    from core.sync import sync_connection
    from integrations.google import GoogleProvider

    settings, store, connection, raw = connected(calendar, home)

    def one_sync() -> tuple[float, float, Any]:
        started, cpu = time.perf_counter(), time.process_time()
        provider = GoogleProvider.from_settings(raw, context_for(settings, ZONE))
        report = sync_connection(store, connection, provider)
        return time.perf_counter() - started, time.process_time() - cpu, report

    calendar.clear_requests()
    seconds, cpu, report = one_sync()
    full = {
        "seconds": seconds,
        "cpu": cpu,
        "created": report.created,
        "requests": len(calendar.requests()),
        "pages": report.pages,
    }
    calendar.clear_requests()
    seconds, cpu, report = one_sync()
    sent = calendar.requests()
    incremental = {
        "seconds": seconds,
        "cpu": cpu,
        "changes": report.changes,
        "requests": len(sent),
        "with_sync_token": sum(1 for r in sent if "syncToken" in r["query"]),
    }
    return full, incremental, store, connection


@contextmanager
def alliance_server(store: Any, calendar: Calendar, home: Path) -> Iterator[Any]:
    """Alliance's app + embedded worker under uvicorn on a loopback port, ALLIANCE_PUBLIC_URL at it."""
    import uvicorn

    from alliance.app import create_app
    from alliance.worker import EmbeddedWorker

    sock = listen_tcp()
    settings = _settings(calendar, home, f"http://127.0.0.1:{sock.getsockname()[1]}")
    worker = EmbeddedWorker(store, settings)  # default poll (2 s): a ping wakes it up
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings, store=store, worker=worker), log_level="warning", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    worker.start()
    try:
        yield settings
    finally:
        worker.stop(timeout=30)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def push_latency(calendar: Calendar, store: Any, home: Path, edits: int, rng: random.Random) -> dict[str, Any]:
    """(d) edit -> mirror, through a real push channel, ``edits`` times (one at a time)."""
    from sqlalchemy import func, select

    from alliance.jobs import build_registry
    from alliance.push import maintain_channels
    from core.store.models import Occurrence, OutboxEvent

    latencies: list[float] = []
    with alliance_server(store, calendar, home) as settings, httpx.Client(timeout=30) as http:
        report = maintain_channels(store, settings, datetime.now(UTC), build_registry(settings))
        if not report.opened:
            raise RuntimeError("no push channel could be opened")
        # Steady state first: the full mirror left 10,000 occurrence.created events for the
        # worker's handlers; a ping arriving behind that backlog would measure the backlog.
        backlog = select(func.count()).select_from(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
        deadline = time.monotonic() + 600
        while True:
            with store.session() as session:
                if not session.scalar(backlog):
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the worker did not work through the outbox backlog")
            time.sleep(0.1)
        for _ in range(edits):
            event_id = rng.choice(calendar.ids)
            new_start = calendar.starts[event_id] + timedelta(hours=rng.choice((-3, -2, -1, 1, 2, 3)))
            started = time.perf_counter()
            moved = http.post(
                f"{calendar.control}/calendars/primary/events/{event_id}/move",
                json={"start": {"dateTime": new_start.astimezone(UTC).isoformat(), "timeZone": ZONE}},
            )
            moved.raise_for_status()
            calendar.starts[event_id] = new_start
            query = select(Occurrence.start_utc).where(Occurrence.provider_id == event_id)
            deadline = started + 30
            while True:
                with store.session() as session:
                    if session.scalar(query) == new_start:
                        break
                if time.perf_counter() > deadline:
                    raise RuntimeError(f"edit of {event_id} did not reach the mirror within 30 s")
                time.sleep(0.002)
            latencies.append(time.perf_counter() - started)
    ordered = sorted(latencies)
    return {
        "edits": edits,
        "p50": statistics.median(ordered),
        "p99": ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))],
        "max": ordered[-1],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of (a), (b), (c), interleaved")
    parser.add_argument("--edits", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--default-gc", action="store_true", help="keep the interpreter's collector settings")
    args = parser.parse_args(argv)
    if not args.default_gc:
        # What the measured code imports, then the tuning the long-running commands apply.
        import googleapiclient.discovery  # noqa: F401

        import alliance.app  # noqa: F401
        import integrations.google.provider  # noqa: F401
        from alliance.gc_tuning import tune_for_long_running_process

        tune_for_long_running_process()
    rng = random.Random(args.seed)
    now = datetime.now(UTC)
    workdir = Path(tempfile.mkdtemp(prefix="alliance-google-bench-"))
    samples: dict[str, list[dict[str, Any]]] = {"floor": [], "full": [], "incremental": []}
    try:
        with emulator_process() as base:
            calendar = seed(base, args.events, rng, now)
            from alliance.providers import context_for

            window = context_for(_settings(calendar, workdir / "w"), ZONE).window
            store = connection = None
            for round_ in range(args.repeat):
                samples["floor"].append(floor(calendar, window))
                if store is not None:
                    store.close()
                full, incremental, store, connection = mirror_runs(calendar, workdir / f"run{round_}")
                samples["full"].append(full)
                samples["incremental"].append(incremental)
            assert store is not None and connection is not None
            push = push_latency(calendar, store, workdir / "push", args.edits, rng)
            store.close()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    a = statistics.median(s["seconds"] for s in samples["floor"])
    b = statistics.median(s["seconds"] for s in samples["full"])
    c = statistics.median(s["seconds"] for s in samples["incremental"])
    a_cpu = statistics.median(s["cpu"] for s in samples["floor"])
    b_cpu = statistics.median(s["cpu"] for s in samples["full"])
    pages = samples["floor"][0]["pages"]
    checks = {
        "(b) <= 1.3x (a)": b / a <= 1.3,
        "(b) created every event": all(s["created"] == samples["floor"][0]["items"] for s in samples["full"]),
        "full sync requests = pages": all(s["requests"] == pages for s in samples["full"]),
        "(c) exactly 1 request, with the sync token": all(
            s["requests"] == 1 and s["with_sync_token"] == 1 and s["changes"] == 0 for s in samples["incremental"]
        ),
        "(d) p50 <= 1 s": push["p50"] <= 1.0,
        "(d) p99 <= 3 s": push["p99"] <= 3.0,
    }
    rows = [
        (
            "(a) floor: bare client, 2500/page",
            f"{a:.3f} s",
            "1.00x",
            f"{pages} pages, {samples['floor'][0]['items']} items; client CPU {a_cpu:.3f} s",
        ),
        (
            "(b) Alliance full mirror",
            f"{b:.3f} s",
            f"{b / a:.2f}x",
            f"{samples['full'][0]['requests']} requests; client CPU {b_cpu:.3f} s ({b_cpu / a_cpu:.2f}x)",
        ),
        (
            "(c) incremental, no change",
            f"{c:.3f} s",
            f"{c / a:.2f}x",
            f"{samples['incremental'][0]['requests']} request",
        ),
        ("(d) push edit -> mirror p50", f"{push['p50'] * 1000:.0f} ms", "", f"{push['edits']} edits"),
        ("(d) push edit -> mirror p99", f"{push['p99'] * 1000:.0f} ms", "", f"max {push['max'] * 1000:.0f} ms"),
    ]
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"Google sync benchmark: {args.events} events, {args.repeat} rounds, medians; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.1f}, "
        f"collector {'defaults' if args.default_gc else 'tuned'}"
    )
    print("| scenario | time | vs floor | notes |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    # Each round times (a) and (b) back to back, so a round's own ratio is not moved by the
    # machine's drift between rounds (shared cores); shown next to the ratio of the medians.
    rounds = zip(samples["floor"], samples["full"], strict=True)
    paired = sorted(full["seconds"] / floor_["seconds"] for floor_, full in rounds)
    print(
        f"(b) / (a) per round: median {statistics.median(paired):.2f}x, "
        f"range {paired[0]:.2f}x - {paired[-1]:.2f}x over {len(paired)} rounds"
    )
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {name}")
    if args.json:
        args.json.write_text(json.dumps({"samples": samples, "push": push, "checks": checks}, indent=2, default=str))
    return 0 if (all(checks.values()) or not args.check) else 1


if __name__ == "__main__":
    raise SystemExit(main())
