"""Outlook sync benchmark: Alliance's full mirror against bare Graph paging, side by side, in one run.

The Graph + identity emulator runs in its own process (so its CPU time is I/O wait for both
sides) with a seeded mailbox of 10,000 calendar-view instances in the window: 9,000 single
events and 40 weekly series of 25 occurrences each, half of them in Windows time zones.
Then, interleaved ``--repeat`` times:

    floor      httpx alone: the same delta listing (same Prefer headers, same page size),
               following ``@odata.nextLink`` to the ``@odata.deltaLink``, parsing every page,
               and fetching each series master once, four at a time (the same requests
               Alliance makes), with an access token obtained beforehand
    full       ``sync_connection`` of the Outlook provider into an empty SQLite mirror: MSAL
               silent acquisition from the stored token cache (and the authority's discovery),
               paging, master completion, mapping, encryption, writes
    delta      a no-change round on the cursor ``full`` left, five in a row (the median): must be
               exactly one request each
    floor-d    httpx alone: one GET of the same kind of delta link

Reported: medians and the ratios full/floor (target <= 1.3) and delta/floor-d, and the number of
Graph requests of the no-change round (target 1).

``--latency N`` (default 200) then measures notification-to-mirror latency: Alliance's web app on a
loopback port as the public URL, a subscription made through the validation handshake, the
embedded worker running; N events are created one after another through the emulator's control
API, and each latency is the time from the create until the occurrence is in the mirror (targets
p50 <= 1 s, p99 <= 3 s). ``python -m benchmarks.outlook_sync --help``.

``--postgres ADMIN_URL`` mirrors into PostgreSQL instead (a scratch database per round, created and
dropped), and reports the WAL each no-change round wrote besides. Every run reports the size of the
cursor the no-change rounds rewrite.

``--compare TREE [TREE...]`` measures code trees side by side instead (main against a branch): one
emulator and one signed-in mailbox; each round runs, for every tree in turn (the order alternating
from round to round), a fresh interpreter importing that tree's code which does ``floor`` and then
``full`` and ``delta``. Per tree: medians, and the ratio of its own full mirror to the floor measured
just before it.

The process tunes its garbage collector after its imports as ``alliance sync``, ``alliance worker``
and ``alliance serve`` do (alliance/gc_tuning.py), like the Google benchmark; ``--default-gc`` does not.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sandbox.listen import listen_tcp

REPO_ROOT = Path(__file__).resolve().parent.parent
NO_CHANGE_ROUNDS = 5
NOW = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
WINDOW = (NOW - timedelta(days=60), NOW + timedelta(days=365))
SINGLES = 9_000
SERIES = 40
OCCURRENCES = 25
PAGE_SIZE = 500
BENCH_MASTER_KEY = base64.b64encode(bytes(range(32))).decode()
ZONES = ("UTC", "W. Europe Standard Time", "Romance Standard Time", "GMT Standard Time")


# ----- the emulator process ------------------------------------------------------------------------


def _serve(seed: int) -> None:
    """Child: run the emulator, seed the mailbox, print where it is, serve until stdin closes."""
    from zoneinfo import ZoneInfo

    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    from sandbox.outlook import OutlookState, run_outlook_emulator

    rng = random.Random(seed)
    state = OutlookState(seed=seed)

    def local(moment: datetime, zone: str) -> dict[str, str]:
        tz = ZoneInfo(WINDOWS_TO_OLSON.get(zone, zone)) if zone != "UTC" else UTC
        return {"dateTime": moment.astimezone(tz).replace(tzinfo=None).isoformat(), "timeZone": zone}

    for n in range(SINGLES):
        start = NOW - timedelta(days=59) + timedelta(hours=rng.randrange(0, 24 * 420))
        zone = ZONES[n % len(ZONES)]
        state.seed_event(
            {
                "subject": f"Session {n}",
                "location": {"displayName": f"Room {n % 7}"},
                "body": {"contentType": "text", "content": "Notes " * (n % 5)},
                "attendees": [{"emailAddress": {"address": f"c{n % 300}@example.org"}, "type": "required"}],
                "start": local(start, zone),
                "end": local(start + timedelta(minutes=50), zone),
            }
        )
    for n in range(SERIES):
        start = NOW + timedelta(days=1 + n % 7, hours=8 + n % 10)
        zone = ZONES[n % len(ZONES)]
        day = start.astimezone(ZoneInfo("Europe/Berlin")).strftime("%A").lower()
        state.seed_event(
            {
                "subject": f"Weekly {n}",
                "start": local(start, zone),
                "end": local(start + timedelta(minutes=50), zone),
                "recurrence": {
                    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [day]},
                    "range": {
                        "type": "numbered",
                        "startDate": start.date().isoformat(),
                        "numberOfOccurrences": OCCURRENCES,
                    },
                },
            }
        )
    with run_outlook_emulator(state) as emu:
        instances = len(state.instances(WINDOW))
        print(
            json.dumps(
                {
                    "base_url": emu.base_url,
                    "authority": emu.authority,
                    "graph_url": emu.graph_url,
                    "ca_file": str(emu.ca_file),
                    "instances": instances,
                }
            ),
            flush=True,
        )
        sys.stdin.read()


# ----- measurements ---------------------------------------------------------------------------------


def _options(info: dict[str, Any]) -> dict[str, Any]:
    from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET

    return {
        "authority": info["authority"],
        "graph_url": info["graph_url"],
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "ca_bundle": info["ca_file"],
    }


def _connection_settings(info: dict[str, Any]) -> dict[str, Any]:
    """A real sign-in through MSAL's code flow (as `alliance connect outlook` does)."""
    from urllib.parse import parse_qsl, urlsplit

    from integrations.outlook import oauth
    from integrations.outlook.settings import OutlookOptions
    from integrations.outlook.transport import identity_session

    options = OutlookOptions.from_mapping(_options(info))
    sign_in = oauth.begin(options, "http://127.0.0.1:9/callback")
    answer = identity_session(info["ca_file"]).get(sign_in.url, allow_redirects=False)
    return oauth.finish(options, sign_in, dict(parse_qsl(urlsplit(answer.headers["location"]).query)))


def _access_token(info: dict[str, Any], settings: dict[str, Any]) -> str:
    from integrations.outlook.settings import OutlookOptions, parse_settings
    from integrations.outlook.tokens import TokenManager

    return TokenManager(parse_settings(settings), OutlookOptions.from_mapping(_options(info))).access_token()


PREFER = [
    ("Prefer", 'IdType="ImmutableId"'),
    ("Prefer", 'outlook.timezone="UTC"'),
    ("Prefer", f"odata.maxpagesize={PAGE_SIZE}"),
    ("Prefer", 'outlook.body-content-type="text"'),  # as the mirror asks (plain descriptions)
]


def floor_full(
    info: dict[str, Any], token: str, master_workers: int = 4, batch: bool = False
) -> tuple[float, float, int, str]:
    """Bare httpx: page the delta, fetch each master once (``master_workers`` at a time).

    With ``batch``, a page's masters go 20 to a ``$batch`` call, chained as Alliance sends them.
    Returns (seconds, CPU seconds of this process, items, deltaLink).
    """
    import httpx

    context = ssl.create_default_context(cafile=info["ca_file"])
    started = time.perf_counter()
    cpu = time.process_time()
    with httpx.Client(verify=context, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        url = f"{info['graph_url']}/me/calendarView/delta"
        params: dict[str, str] | None = {
            "startDateTime": WINDOW[0].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "endDateTime": WINDOW[1].strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        items = 0
        masters: set[str] = set()
        while True:
            body = client.get(url, params=params, headers=PREFER).json()
            params = None
            items += len(body["value"])
            wanted = {i["seriesMasterId"] for i in body["value"] if i.get("seriesMasterId")} - masters
            masters |= wanted
            if batch:
                ordered = sorted(wanted)
                chunks = [ordered[at : at + 20] for at in range(0, len(ordered), 20)]
                with ThreadPoolExecutor(max_workers=master_workers) as pool:
                    list(pool.map(lambda chunk: _floor_batch(client, info, chunk), chunks))
            else:
                with ThreadPoolExecutor(max_workers=master_workers) as pool:
                    list(
                        pool.map(
                            lambda m: client.get(f"{info['graph_url']}/me/events/{m}", headers=PREFER[:2]).json(),
                            sorted(wanted),
                        )
                    )
            if "@odata.deltaLink" in body:
                return time.perf_counter() - started, time.process_time() - cpu, items, body["@odata.deltaLink"]
            url = body["@odata.nextLink"]


def _floor_batch(client: Any, info: dict[str, Any], master_ids: list[str]) -> list[Any]:
    prefer = {"Prefer": ", ".join(value for _, value in PREFER[:2])}
    requests = [
        {"id": str(n), "method": "GET", "url": f"/me/events/{m}", "headers": prefer}
        | ({"dependsOn": [str(n - 1)]} if n else {})
        for n, m in enumerate(master_ids)
    ]
    answers = client.post(f"{info['graph_url']}/$batch", json={"requests": requests}).json()["responses"]
    if len(answers) != len(master_ids) or any(a["status"] != 200 for a in answers):
        raise RuntimeError("the floor's batch of masters did not come back whole")
    return [a["body"] for a in answers]


def floor_delta(info: dict[str, Any], token: str, delta_link: str) -> float:
    import httpx

    context = ssl.create_default_context(cafile=info["ca_file"])
    started = time.perf_counter()
    with httpx.Client(verify=context, timeout=60, headers={"Authorization": f"Bearer {token}"}) as client:
        body = client.get(delta_link, headers=PREFER).json()
    elapsed = time.perf_counter() - started
    if body["value"] or "@odata.deltaLink" not in body:
        raise RuntimeError("the floor's no-change round was not empty")
    return elapsed


def alliance_rounds(
    info: dict[str, Any], settings: dict[str, Any], workdir: Path, postgres: str | None = None
) -> dict[str, Any]:
    """Alliance's full mirror and then five no-change rounds, into SQLite (or a scratch PostgreSQL database).

    Keys: full, full-cpu (seconds), delta (the no-change rounds' median seconds), created,
    requests (most Graph requests of a no-change round), cursor-bytes (the cursor each no-change
    round rewrites), and on PostgreSQL delta-wal (median WAL bytes a no-change round wrote).
    """
    import httpx

    with _store_for_rounds(workdir, postgres) as store:
        from core.mirror import add_connection, ensure_therapist
        from core.sync import sync_connection
        from integrations.base.protocol import ProviderContext
        from integrations.outlook import OutlookProvider

        connection = add_connection(store, ensure_therapist(store, "bench@example.org"), "outlook", "o", settings)
        context = ProviderContext(now=NOW, options={"outlook": _options(info)})
        started = time.perf_counter()
        cpu = time.process_time()
        report = sync_connection(store, connection, OutlookProvider.build(settings, context))
        result: dict[str, Any] = {
            "full": time.perf_counter() - started,
            "full-cpu": time.process_time() - cpu,
            "created": report.created,
        }
        control = httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=30)
        deltas: list[float] = []
        wal: list[int] = []
        requests = 0
        for _ in range(NO_CHANGE_ROUNDS):
            before = len(control.get(f"{info['base_url']}/_sandbox/requests", params={"path": "/v1.0/"}).json())
            lsn = _wal_position(store)
            started = time.perf_counter()
            again = sync_connection(store, connection, OutlookProvider.build(settings, context))
            deltas.append(time.perf_counter() - started)
            if lsn is not None:
                wal.append(_wal_bytes_since(store, lsn))
            after = len(control.get(f"{info['base_url']}/_sandbox/requests", params={"path": "/v1.0/"}).json())
            requests = max(requests, after - before)
            if again.changes:
                raise RuntimeError(f"the no-change round changed {again.changes} occurrences")
        control.close()
        result |= {"delta": statistics.median(deltas), "requests": requests, "cursor-bytes": _cursor_bytes(store)}
        if wal:
            result["delta-wal"] = statistics.median(wal)
        return result


@contextmanager
def _store_for_rounds(workdir: Path, postgres: str | None) -> Iterator[Any]:
    """A fresh store: a SQLite file in ``workdir``, or a scratch database on ``postgres`` (an admin URL)."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    from core.crypto import Keyring, MasterKeys
    from core.store import Store

    keyring = Keyring(MasterKeys.from_env_value(BENCH_MASTER_KEY))
    if postgres is None:
        store = Store.open(f"sqlite:///{workdir / f'mirror-{time.monotonic_ns()}.db'}", keyring=keyring)
        try:
            yield store
        finally:
            store.close()
        return
    name = f"alliance_bench_{random.getrandbits(40):010x}"
    admin = create_engine(postgres, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        store = Store.open(make_url(postgres).set(database=name).render_as_string(hide_password=False), keyring=keyring)
        try:
            yield store
        finally:
            store.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _wal_position(store: Any) -> str | None:
    """PostgreSQL's current WAL position (None on SQLite)."""
    from sqlalchemy import text

    if store.engine.dialect.name != "postgresql":
        return None
    with store.engine.connect() as conn:
        return str(conn.execute(text("SELECT pg_current_wal_lsn()")).scalar_one())


def _wal_bytes_since(store: Any, lsn: str) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :lsn)"), {"lsn": lsn}).scalar_one())


def _cursor_bytes(store: Any) -> int:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        return int(conn.execute(text("SELECT max(length(cursor)) FROM connections")).scalar_one() or 0)


def notification_latency(info: dict[str, Any], settings: dict[str, Any], workdir: Path, edits: int) -> list[float]:
    """Seconds from each create in Outlook until its occurrence is in the mirror, through push."""
    import threading

    import httpx
    import uvicorn
    from sqlalchemy import select

    from alliance.app import create_app
    from alliance.jobs import build_registry
    from alliance.outlook_push import maintain_subscriptions
    from alliance.settings import Settings
    from alliance.syncing import sync_one
    from alliance.worker import EmbeddedWorker
    from core.crypto import Keyring, MasterKeys
    from core.mirror import add_connection, ensure_therapist, list_connections
    from core.store import Store
    from core.store.models import Occurrence

    store = Store.open(
        f"sqlite:///{workdir / 'latency.db'}", keyring=Keyring(MasterKeys.from_env_value(BENCH_MASTER_KEY))
    )
    sock = listen_tcp()
    public = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = _options(info)
    app_settings = Settings(
        home=workdir,
        public_url=public,
        ms_authority=options["authority"],
        graph_api_url=options["graph_url"],
        ms_client_id=options["client_id"],
        ms_client_secret=options["client_secret"],
        ms_ca_bundle=Path(options["ca_bundle"]),
        timezone="UTC",
    )
    add_connection(store, ensure_therapist(store, "bench@example.org"), "outlook", "o", settings)
    (connection,) = list_connections(store)
    if not sync_one(store, app_settings, connection).ok:
        raise RuntimeError("the first sync failed")
    worker = EmbeddedWorker(store, app_settings, poll_interval=0.05)
    server = uvicorn.Server(
        uvicorn.Config(create_app(app_settings, store=store, worker=worker), log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.01)
    latencies: list[float] = []
    control = httpx.Client(verify=ssl.create_default_context(cafile=info["ca_file"]), timeout=30)
    try:
        maintain_subscriptions(store, app_settings, build_registry(app_settings))
        # Steady state: the first sync's 10,000 outbox events are handled before measuring.
        while worker.tick():
            pass
        worker.start()
        for n in range(edits):
            uid = f"latency-{n}@bench.test"
            start = NOW + timedelta(days=1 + n % 30, hours=n % 9)
            body = {
                "iCalUId": uid,
                "subject": f"Latency {n}",
                "start": {"dateTime": start.replace(tzinfo=None).isoformat(), "timeZone": "UTC"},
                "end": {
                    "dateTime": (start + timedelta(minutes=50)).replace(tzinfo=None).isoformat(),
                    "timeZone": "UTC",
                },
            }
            began = time.perf_counter()
            control.post(f"{info['base_url']}/_sandbox/events", json=body).raise_for_status()
            while True:
                with store.session() as session:
                    if session.scalar(select(Occurrence.id).where(Occurrence.ical_uid == uid)) is not None:
                        break
                if time.perf_counter() - began > 60:
                    raise RuntimeError(f"edit {n} never reached the mirror")
                time.sleep(0.005)
            latencies.append(time.perf_counter() - began)
    finally:
        control.close()
        worker.stop()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        store.close()
    return latencies


def _tune_gc(default_gc: bool) -> None:
    if not default_gc:
        from alliance.gc_tuning import tune_for_long_running_process

        tune_for_long_running_process()


def _one_round(job: Path) -> None:
    """Child of ``--compare``: floor, full and delta once, with the code of the tree it was started in."""
    spec = json.loads(job.read_text())
    import alliance  # noqa: F401  (the tree's packages are imported before the collector is tuned)
    import core.sync  # noqa: F401
    import integrations.outlook  # noqa: F401

    _tune_gc(spec["default_gc"])
    info, settings = spec["info"], spec["settings"]
    floor_s, floor_cpu, _, delta_link = floor_full(
        info, spec["token"], spec["floor_workers"], spec.get("floor_batch", False)
    )
    floor_d = floor_delta(info, spec["token"], delta_link)
    with tempfile.TemporaryDirectory(prefix="outlook-bench-") as tmp:
        rounds = alliance_rounds(info, settings, Path(tmp), spec.get("postgres"))
    print(json.dumps({"floor": floor_s, "floor-cpu": floor_cpu, "floor-d": floor_d} | rounds), flush=True)


def compare(info: dict[str, Any], settings: dict[str, Any], token: str, args: argparse.Namespace) -> dict[str, Any]:
    """``--compare``: every tree's rounds in fresh interpreters, alternating; per-tree medians and ratios."""
    trees = [Path(t).resolve() for t in args.compare]
    samples: dict[str, list[dict[str, Any]]] = {str(t): [] for t in trees}
    with tempfile.TemporaryDirectory(prefix="outlook-compare-") as tmp:
        job = Path(tmp) / "job.json"
        spec = {"info": info, "settings": settings, "token": token}
        job.write_text(
            json.dumps(
                spec
                | {
                    "default_gc": args.default_gc,
                    "floor_workers": args.floor_workers,
                    "floor_batch": args.floor_batch,
                    "postgres": args.postgres,
                }
            )
        )
        for round_number in range(args.repeat):
            order = trees if round_number % 2 == 0 else trees[::-1]
            for tree in order:
                # run_path: this file's own code, with only the tree (not benchmarks/) on sys.path.
                code = (
                    "import runpy, sys; sys.argv = ['outlook_sync', '--one-round', sys.argv[1]]; "
                    f"runpy.run_path({str(Path(__file__).resolve())!r}, run_name='__main__')"
                )
                done = subprocess.run(
                    [sys.executable, "-c", code, str(job)],
                    cwd=tree,
                    env={**os.environ, "PYTHONPATH": str(tree), "NO_PROXY": "127.0.0.1,localhost"},
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout.strip().splitlines()[-1])
                result["load"] = os.getloadavg()[0]
                samples[str(tree)].append(result)
                print(
                    f"round {round_number + 1} {tree.name:<12} floor {result['floor']:.3f} s "
                    f"(CPU {result['floor-cpu']:.3f})  full {result['full']:.3f} s (CPU {result['full-cpu']:.3f}) "
                    f"{result['full'] / result['floor']:.2f}x  delta {result['delta']:.3f} s, "
                    f"{result['requests']} request(s), cursor {result['cursor-bytes']} B"
                    + (f", WAL {result['delta-wal']} B" if "delta-wal" in result else "")
                    + f"  load {result['load']:.1f}",
                    flush=True,
                )
    summary: dict[str, Any] = {}
    print(f"{'tree':<14} {'floor s':>8} {'full s':>8} {'ratio':>6} {'floor CPU':>9} {'full CPU':>9} {'delta s':>8}")
    for tree in trees:
        rows = samples[str(tree)]
        med = {k: statistics.median(r[k] for r in rows) for k in ("floor", "full", "floor-cpu", "full-cpu", "delta")}
        ratio = statistics.median(r["full"] / r["floor"] for r in rows)
        summary[str(tree)] = {"median": med, "median_ratio": ratio, "rounds": rows}
        extra = f"cursor {statistics.median(r['cursor-bytes'] for r in rows):.0f} B"
        if all("delta-wal" in r for r in rows):
            extra += f", WAL per no-change round {statistics.median(r['delta-wal'] for r in rows):.0f} B"
        print(
            f"{tree.name:<14} {med['floor']:>8.3f} {med['full']:>8.3f} {ratio:>6.2f} {med['floor-cpu']:>9.3f} "
            f"{med['full-cpu']:>9.3f} {med['delta']:>8.3f}  {extra}"
        )
    loads = [r["load"] for rows in samples.values() for r in rows]
    print(f"load average (1 min) during the rounds: {min(loads):.1f}-{max(loads):.1f} on {os.cpu_count()} CPUs")
    return summary


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=20261127)
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--latency", type=int, default=200, help="edits for the push latency run (0: skip)")
    parser.add_argument("--compare", nargs="+", metavar="TREE", help="code trees to measure side by side")
    parser.add_argument(
        "--floor-workers",
        type=int,
        default=4,
        help="series masters the floor fetches at once (4, Graph's per-mailbox limit; Alliance keeps 2)",
    )
    parser.add_argument(
        "--floor-batch",
        action="store_true",
        help="the floor fetches a page's masters 20 to a $batch call, chained, as Alliance does",
    )
    parser.add_argument(
        "--postgres",
        metavar="ADMIN_URL",
        help="mirror into PostgreSQL instead of SQLite (a scratch database per round, dropped after)",
    )
    parser.add_argument("--default-gc", action="store_true", help="keep the interpreter's collector settings")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--one-round", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.serve:
        _serve(args.seed)
        return 0
    if args.one_round:
        _one_round(args.one_round)
        return 0
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.outlook_sync", "--serve", "--seed", str(args.seed)],
        cwd=REPO_ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "NO_PROXY": "127.0.0.1,localhost"},
    )
    try:
        assert child.stdout is not None
        info = json.loads(child.stdout.readline())
        settings = _connection_settings(info)
        token = _access_token(info, settings)
        if args.compare:
            result = compare(info, settings, token, args)
            if args.json:
                args.json.write_text(json.dumps(result, indent=2))
            return 0
        _tune_gc(args.default_gc)
        samples: dict[str, list[float]] = {
            "floor": [],
            "full": [],
            "floor-d": [],
            "delta": [],
            "floor-cpu": [],
            "full-cpu": [],
        }
        requests_per_round: list[int] = []
        created: list[int] = []
        cursor_bytes: list[int] = []
        wal_bytes: list[int] = []
        with tempfile.TemporaryDirectory(prefix="outlook-bench-") as tmp:
            for _ in range(args.repeat):
                seconds, cpu, items, delta_link = floor_full(info, token, args.floor_workers, args.floor_batch)
                samples["floor"].append(seconds)
                samples["floor-cpu"].append(cpu)
                samples["floor-d"].append(floor_delta(info, token, delta_link))
                rounds = alliance_rounds(info, settings, Path(tmp), args.postgres)
                samples["full"].append(rounds["full"])
                samples["full-cpu"].append(rounds["full-cpu"])
                samples["delta"].append(rounds["delta"])
                created.append(rounds["created"])
                requests_per_round.append(rounds["requests"])
                cursor_bytes.append(rounds["cursor-bytes"])
                if "delta-wal" in rounds:
                    wal_bytes.append(rounds["delta-wal"])
        median = {k: statistics.median(v) for k, v in samples.items()}
        summary = {
            "instances": info["instances"],
            "floor_items": items,
            "created": created,
            "median_seconds": median,
            "full_over_floor": median["full"] / median["floor"],
            "delta_over_floor": median["delta"] / median["floor-d"],
            "full_cpu_over_floor": median["full-cpu"] / median["floor-cpu"],
            "load_average": os.getloadavg(),
            "no_change_requests": requests_per_round,
            "cursor_bytes": cursor_bytes,
            "no_change_wal_bytes": wal_bytes,
            "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        }
        print(f"mailbox: {info['instances']} instances in the window; floor listed {items}, Alliance created {created}")
        print(f"{'scenario':<10} {'median s':>9} {'ratio':>7}   samples")
        for name, floor in (("full", "floor"), ("full-cpu", "floor-cpu"), ("delta", "floor-d")):
            print(f"{floor:<10} {median[floor]:>9.3f} {'1.00':>7}   {', '.join(f'{s:.3f}' for s in samples[floor])}")
            ratio = median[name] / median[floor]
            print(f"{name:<10} {median[name]:>9.3f} {ratio:>7.2f}   {', '.join(f'{s:.3f}' for s in samples[name])}")
        print(f"no-change round: {requests_per_round} Graph request(s) (target 1); cursor {cursor_bytes} bytes")
        if wal_bytes:
            print(f"WAL written by a no-change round on PostgreSQL (median of {NO_CHANGE_ROUNDS}): {wal_bytes} bytes")
        print(f"load average at the end: {', '.join(f'{x:.1f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs")
        latencies: list[float] = []
        if args.latency:
            with tempfile.TemporaryDirectory(prefix="outlook-latency-") as tmp:
                latencies = notification_latency(info, settings, Path(tmp), args.latency)
            p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
            summary["latency"] = {"edits": len(latencies), "p50": p50, "p99": p99, "max": max(latencies)}
            print(
                f"notification to mirror over {len(latencies)} edits: p50 {p50:.3f} s, p99 {p99:.3f} s, "
                f"max {max(latencies):.3f} s (targets 1 s / 3 s)"
            )
        if args.json:
            args.json.write_text(json.dumps({"samples": samples, "latencies": latencies, "summary": summary}, indent=2))
        missed = summary["full_over_floor"] > 1.3 or any(r != 1 for r in requests_per_round)
        if latencies:
            missed = missed or summary["latency"]["p50"] > 1 or summary["latency"]["p99"] > 3
        return 1 if args.check and missed else 0
    finally:
        if child.stdin:
            child.stdin.close()
        child.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
