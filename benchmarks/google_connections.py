"""Syncs with nothing new, over plain HTTP and over TLS: what a new connection per sync costs.

Each sync with nothing new (one per push ping) sends one ``events.list`` with its sync token. Before
``integrations.google.http_pool`` every sync opened its own connection to Google for it; now the
syncs of a process share kept-alive connections. Side by side, in one run, against the Google
emulator (``sandbox/google`` under uvicorn in its own process, once over HTTP and once over TLS
with a certificate made for the run):

    floor, kept connection   the bare google-api-python-client sending the same request with one
                             ``httplib2.Http`` kept for every request
    floor, new connection    the same with a new ``httplib2.Http`` per request: what every sync
                             paid for its connection before
    Alliance                 ``sync_connection`` of a mirrored Google calendar with no change (SQLite)

Per request: wall time, this process's CPU, and the emulator's CPU (the server side of the
handshake). ``python -m benchmarks.google_connections --help``; figures in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.google_sync import ZONE, Calendar, connected, emulator_child, seed
from sandbox.outlook.tls import make_test_certificates


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _floor(calendar: Calendar, sync_token: str, *, keep: bool) -> Callable[[], None]:
    import httplib2
    from google.oauth2.credentials import Credentials
    from google_auth_httplib2 import AuthorizedHttp
    from googleapiclient.discovery import build

    credentials = Credentials(token=calendar.tokens["access_token"])
    service = build(
        "calendar",
        "v3",
        http=httplib2.Http(),
        client_options={"api_endpoint": f"{calendar.base}/calendar/v3/"},
        static_discovery=True,
        cache_discovery=False,
    )
    events = service.events()
    kept = AuthorizedHttp(credentials, http=httplib2.Http(timeout=30))

    def one() -> None:
        http = kept if keep else AuthorizedHttp(credentials, http=httplib2.Http(timeout=30))
        page = events.list(calendarId="primary", singleEvents=True, syncToken=sync_token).execute(http=http)
        assert page.get("nextSyncToken"), page

    return one


def _alliance(calendar: Calendar, home: Path) -> tuple[Callable[[], None], str]:
    """A mirrored connection's no-change sync (a new provider each time, as every sync builds), and
    the sync token the mirror holds (what the floor sends)."""
    from alliance.providers import context_for
    from core.store.models import Connection
    from core.sync import sync_connection
    from integrations.google import GoogleProvider
    from integrations.google.cursor import GoogleCursor

    settings, store, connection, raw = connected(calendar, home)

    def sync() -> int:
        provider = GoogleProvider.from_settings(raw, context_for(settings, ZONE))
        return sync_connection(store, connection, provider).changes

    def no_change() -> None:
        if sync():
            raise RuntimeError("a sync found changes in a calendar nobody edits")

    sync()  # the first mirror
    with store.session() as session:
        cursor = GoogleCursor.loads(session.get_one(Connection, connection).cursor)
    if cursor is None:
        raise RuntimeError("the first mirror left no sync token")
    return no_change, cursor.sync_token


def _measure(fn: Callable[[], None], count: int, emulator_pid: int) -> dict[str, float]:
    server = _cpu_of(emulator_pid)
    cpu, started = time.process_time(), time.perf_counter()
    for _ in range(count):
        fn()
    wall = time.perf_counter() - started
    return {
        "wall_ms": wall / count * 1000,
        "cpu_ms": (time.process_time() - cpu) / count * 1000,
        "server_cpu_ms": (_cpu_of(emulator_pid) - server) / count * 1000,
    }


def run(tls: bool, count: int, rounds: int, workdir: Path) -> dict[str, list[dict[str, float]]]:
    certificates = make_test_certificates() if tls else None  # in a new private directory
    material = (certificates.key_file, certificates.cert_file) if certificates else None
    import httplib2

    from integrations.google.client import TIMEOUT_SECONDS

    try:
        from integrations.google.http_pool import shared_pool
    except ImportError:  # a tree from before the pool (an A/B run): every sync has its own Http
        shared_pool = None
    forget = shared_pool(TIMEOUT_SECONDS).close if shared_pool else (lambda: None)
    forget()  # kept Http objects trust what they trusted when made
    default_trust = httplib2.CA_CERTS
    if certificates is not None:
        httplib2.CA_CERTS = str(certificates.ca_file)  # what a new Http trusts (read once at import otherwise)
        os.environ["SSL_CERT_FILE"] = str(certificates.ca_file)  # httpx's (the seeding)
    try:
        with emulator_child(material, "--timeout-keep-alive", "30") as (base, process):
            pid = process.pid
            calendar = seed(base, 20, random.Random(7), datetime.now(UTC))
            alliance, token = _alliance(calendar, workdir / ("tls" if tls else "plain"))
            scenarios = {
                "floor, kept connection": _floor(calendar, token, keep=True),
                "floor, new connection": _floor(calendar, token, keep=False),
                "Alliance, no-change sync": alliance,
            }
            samples: dict[str, list[dict[str, float]]] = {name: [] for name in scenarios}
            for fn in scenarios.values():
                fn()  # warm: imports, first connections
            for _ in range(rounds):  # interleaved, so drift of the shared machine hits all alike
                for name, fn in scenarios.items():
                    samples[name].append(_measure(fn, count, pid))
            forget()
            return samples
    finally:
        httplib2.CA_CERTS = default_trust
        os.environ.pop("SSL_CERT_FILE", None)
        if certificates is not None:
            shutil.rmtree(certificates.ca_file.parent, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=200, help="requests per scenario and round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="alliance-google-conn-"))
    try:
        results = {tls: run(tls, args.count, args.rounds, workdir) for tls in (False, True)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    print(
        f"Google no-change requests: {args.rounds} rounds of {args.count}, medians per request; "
        f"Python {platform.python_version()}, {os.cpu_count()} CPUs, load {load:.1f}"
    )
    print("| transport | scenario | wall | client CPU | emulator CPU | wall vs floor (kept) |")
    print("|---|---|---:|---:|---:|---:|")
    for tls, samples in results.items():
        floor_wall = statistics.median(s["wall_ms"] for s in samples["floor, kept connection"])
        for name, rows in samples.items():
            wall = statistics.median(s["wall_ms"] for s in rows)
            cpu = statistics.median(s["cpu_ms"] for s in rows)
            server = statistics.median(s["server_cpu_ms"] for s in rows)
            print(
                f"| {'TLS' if tls else 'HTTP'} | {name} | {wall:.2f} ms | {cpu:.2f} ms | {server:.2f} ms "
                f"| {wall / floor_wall:.2f}x |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
