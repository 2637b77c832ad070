"""Zoom: verified-webhook throughput and ack latency vs a bare endpoint; provisioning 500 sessions.

    python -m benchmarks.zoom_webhooks [--rounds 5] [--seconds 10] [--connections 16] [--sessions 500]
                                       [--stacks embedded,split,procrastinate] [--skip-provisioning]
                                       [--baseline /path/to/other/checkout] [--json out.json] [--check]

Part 1, ``POST /webhooks/zoom`` under load, both servers real processes under uvicorn on 127.0.0.1
with the settings ``alliance serve`` uses (one worker process):

- **alliance**: ``python -m alliance serve`` on a fresh ALLIANCE_HOME with
  ``ALLIANCE_ZOOM_WEBHOOK_SECRET`` set (its embedded worker applies the stored events alongside,
  as in production). Every request is a distinct ``meeting.participant_joined`` delivery signed
  exactly as Zoom signs (v0 HMAC over the raw body): verified, parsed and stored (one INSERT).
  ``--stacks`` picks how the web process runs, each measured side by side (own home, own database):
  ``embedded`` (the above, SQLite), ``split`` (SQLite, ``alliance serve --no-worker`` plus the
  embedded worker loop in a second process: no GIL shared with the ack, the SQLite file lock
  still shared) and ``procrastinate`` (a scratch PostgreSQL database from ``--admin-url``,
  ``alliance serve --no-worker`` plus ``alliance worker``). After the rounds the table shows how
  many events each stack stored and how many its worker applied meanwhile.
  ``--baseline TREE`` also runs every stack from another checkout (``PYTHONPATH=TREE``; shown as
  ``stack@base``) in the same rounds, so a change is measured against its base side by side.
  Each round also records the CPU time (user + system, from ``/proc``) the stack's web and worker
  processes spent per request: on a shared machine it moves far less with the load than req/s.
- **floor**: a FastAPI app with one ``async def`` route at the same path answering 200 without
  verification or storage.

The load generator is ``wrk``: a Lua script cycles through pre-signed bodies (signed freshly before
every round, so all are inside Zoom's 5-minute window). Rounds are interleaved after one discarded
warm-up each; the table shows the median requests per second, the ratio alliance / floor (target
>= 0.5) and the median p99 ack latency (target < 50 ms, Zoom allows 3 s).

Part 2, in this process: 500 online sessions inside the 14-day window are provisioned by the video
sweep through zoomus (wrapped) against the Zoom emulator; it counts create requests (target: one per
session) and token requests (target: one, all within an hour), and times it against the floor: the
bare zoomus client creating as many meetings over the same loopback with one token.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from benchmarks.harness import free_port, median_summary, stop_servers

TARGET_RATIO = 0.5
TARGET_P99_MS = 50.0
PATH = "/webhooks/zoom"
SECRET = "bench-webhook-secret-" + "x" * 16
BODIES = 20_000


@dataclass(frozen=True)
class Sample:
    server: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    drain_s: float = 0.0  # after the round: how long until the stack's worker had applied every stored event
    web_cpu_us: float = 0.0  # CPU time of the web process per request during the round
    worker_cpu_us: float = 0.0  # CPU time of the worker process (split, procrastinate) per request during the round


def _bare_app() -> Any:
    from fastapi import FastAPI, Response

    app = FastAPI()

    @app.post(PATH)
    async def hook() -> Response:
        return Response(status_code=200)

    return app


def _serve_bare(port: int) -> None:
    import uvicorn

    uvicorn.run(
        _bare_app(),
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_level="info",
        log_config=None,
        server_header=False,
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes], attempts: int = 600) -> None:
    for _ in range(attempts):
        if process.poll() is not None:
            raise SystemExit(f"benchmark: a server exited early ({url})")
        try:
            httpx.get(url, timeout=5, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"benchmark: {url} never answered")


def _signed_bodies(path: Path, count: int, round_no: int) -> None:
    """One line per delivery, ``timestamp<TAB>signature<TAB>body``: distinct events, signed now."""
    from sandbox.zoom import sign

    now = int(time.time())
    with path.open("w") as out:
        for i in range(count):
            obj = {
                "id": str(81000000000 + i % 500),
                "uuid": f"r{round_no}-{i}-" + secrets.token_hex(6),
                "host_id": "bench-host",
                "topic": "Appointment",
                "type": 2,
                "duration": 50,
                "participant": {
                    "user_id": str(i),
                    "user_name": "Participant",
                    "id": "",
                    "join_time": "2026-12-01T17:00:00Z",
                    "email": "",
                },
            }
            body = json.dumps(
                {
                    "event": "meeting.participant_joined",
                    "event_ts": now * 1000 + i,
                    "payload": {"account_id": "bench", "object": obj},
                },
                separators=(",", ":"),
            )
            out.write(f"{now}\t{sign(SECRET, str(now), body.encode())}\t{body}\n")


_LUA = """
local lines = {}
init = function(args)
  for line in io.lines(args[1]) do
    local ts, sig, body = line:match("^(%d+)\\t(%S+)\\t(.*)$")
    lines[#lines + 1] = {ts, sig, body}
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
  i = math.random(#lines)
end
request = function()
  i = (i % #lines) + 1
  local l = lines[i]
  return wrk.format("POST", nil, {["content-type"] = "application/json",
    ["x-zm-request-timestamp"] = l[1], ["x-zm-signature"] = l[2]}, l[3])
end
"""

_WRK_LATENCY = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU of a process (all its threads) so far, from /proc; 0 where there is none."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def _wrk(url: str, seconds: float, connections: int, threads: int, script: Path, bodies: Path) -> Sample:
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "-s",
            str(script),
            url,
            "--",
            str(bodies),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        errors += int(non_2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    latency = {p: float(v) * _UNIT_MS[u] for p, v, u in _WRK_LATENCY.findall(out)}
    return Sample("", 0, rps, latency["50"], latency["99"], total, errors)


# How each stack under test runs the web process and the worker (``--stacks``). Each gets its own
# ALLIANCE_HOME and database, so the stacks never share a lock with each other.
STACKS: dict[str, dict[str, Any]] = {
    # As deployed on SQLite by default: ``alliance serve`` with the embedded worker in the same
    # process (same GIL, and the same SQLite write lock as the webhook's batch insert).
    "embedded": {"db": "sqlite", "web": ["alliance", "serve"], "worker": None, "env": {}},
    # SQLite, the web process without a worker (``serve --no-worker``) and ``alliance worker``
    # (the embedded queue) in a second process: no GIL shared with the ack path, the SQLite file
    # lock still shared.
    "split": {
        "db": "sqlite",
        "web": ["alliance", "serve", "--no-worker"],
        "worker": ["alliance", "worker"],
        "env": {},
    },
    # The scale-out stack of issue 9: PostgreSQL, ``serve --no-worker`` + ``alliance worker``.
    "procrastinate": {
        "db": "postgresql",
        "web": ["alliance", "serve", "--no-worker"],
        "worker": ["alliance", "worker"],
        "env": {"ALLIANCE_QUEUE": "procrastinate"},
    },
}
DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def _stored_and_applied(database_url: str) -> tuple[int, int]:
    """Call events stored by the endpoint, and how many of them the worker applied during the run."""
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(text("SELECT count(*), count(processed_at) FROM video_call_events")).one()
        return int(row[0]), int(row[1])
    finally:
        engine.dispose()


def _drain(database_url: str, timeout: float = 60.0) -> float:
    """Wait until the stack's worker has applied every stored event; seconds waited (``timeout`` if never).

    Without it a worker still applying the backlog of its round would take the CPU from whichever
    server is measured next (2 shared cores).
    """
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        stored, applied = _stored_and_applied(database_url)
        if applied >= stored:
            return time.monotonic() - began
        time.sleep(0.5)
    return timeout


def webhook_throughput(args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise SystemExit("benchmark: wrk is required (apt-get install wrk)")
    from contextlib import ExitStack

    from benchmarks.load_storm import scratch_database
    from core.crypto import generate_key_text

    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    unknown = [name for name in stacks if name not in STACKS]
    if unknown or not stacks:
        raise SystemExit(f"benchmark: --stacks takes {', '.join(STACKS)} (got {args.stacks!r})")
    if args.baseline:
        stacks = [name for stack in stacks for name in (stack, f"{stack}@base")]
    servers = [*stacks, "floor"]
    with tempfile.TemporaryDirectory(prefix="alliance-zoom-bench-") as tmp, ExitStack() as cleanup:
        tmpdir = Path(tmp)
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_") and "proxy" not in k.lower()}
        urls: dict[str, str] = {}
        databases: dict[str, str] = {}
        script = tmpdir / "zoom.lua"
        script.write_text(_LUA)
        bodies = tmpdir / "bodies.tsv"
        processes: list[subprocess.Popen[bytes]] = []
        pids: dict[str, tuple[int, int | None]] = {}  # server -> (web pid, worker pid)
        logs: list[Any] = []
        samples: list[Sample] = []

        def start(
            name: str, module_args: list[str], env: dict[str, str], cwd: Path | None = None
        ) -> subprocess.Popen[bytes]:
            log = (tmpdir / f"{name}.log").open("wb")
            logs.append(log)
            process = subprocess.Popen(
                [sys.executable, "-m", *module_args], env=env, stdout=log, stderr=subprocess.STDOUT, cwd=cwd
            )
            processes.append(process)
            return process

        try:
            for name in stacks:
                stack = STACKS[name.split("@")[0]]
                home = tmpdir / name
                if stack["db"] == "postgresql":
                    database = cleanup.enter_context(scratch_database(args.admin_url))
                else:
                    database = f"sqlite:///{home}/alliance.db"
                    home.mkdir()
                databases[name] = database
                env = {
                    **base_env,
                    "ALLIANCE_HOME": str(home),
                    "ALLIANCE_DATABASE_URL": database,
                    "ALLIANCE_MASTER_KEY": generate_key_text(),
                    "ALLIANCE_TIMEZONE": "UTC",
                    "ALLIANCE_ZOOM_WEBHOOK_SECRET": SECRET,
                    "ALLIANCE_SYNC_INTERVAL_MINUTES": "1440",
                    **stack["env"],
                }
                # ``python -m`` puts the working directory first on sys.path: run from the tree measured.
                tree = args.baseline if name.endswith("@base") else None
                if tree:
                    env["PYTHONPATH"] = str(tree)
                port = free_port()
                urls[name] = f"http://127.0.0.1:{port}{PATH}"
                web = start(f"{name}-web", [*stack["web"], "--host", "127.0.0.1", "--port", str(port)], env, tree)
                _wait_ready(f"http://127.0.0.1:{port}/healthz", web)  # migrated by now
                worker = start(f"{name}-worker", stack["worker"], env, tree) if stack["worker"] else None
                pids[name] = (web.pid, worker.pid if worker else None)
                # The endpoint really verifies: an unsigned delivery is refused.
                if httpx.post(urls[name], content=b"{}", timeout=10, trust_env=False).status_code != 401:
                    raise SystemExit(f"benchmark: {name} accepted an unsigned delivery")
            floor_port = free_port()
            urls["floor"] = f"http://127.0.0.1:{floor_port}{PATH}"
            floor = start("floor", ["benchmarks.zoom_webhooks", "_floor", str(floor_port)], base_env)
            pids["floor"] = (floor.pid, None)
            _wait_ready(f"http://127.0.0.1:{floor_port}/", floor)

            def measure(server: str, seconds: float, round_no: int) -> Sample:
                _signed_bodies(bodies, BODIES, round_no)
                web_pid, worker_pid = pids[server]
                web_cpu, worker_cpu = _cpu_seconds(web_pid), _cpu_seconds(worker_pid)
                s = _wrk(urls[server], seconds, args.connections, args.threads, script, bodies)
                per_request = 1e6 / max(1, s.requests)
                return dataclasses.replace(
                    s,
                    web_cpu_us=(_cpu_seconds(web_pid) - web_cpu) * per_request,
                    worker_cpu_us=(_cpu_seconds(worker_pid) - worker_cpu) * per_request,
                )

            for server in servers:
                measure(server, min(3.0, args.seconds), -1)
                if server in databases:
                    _drain(databases[server])
            for r in range(args.rounds):
                # Interleaved, the order rotating every round, so a burst of load from elsewhere on
                # the machine does not always hit the same server.
                shift = r % len(servers)
                for server in servers[shift:] + servers[:shift]:
                    s = measure(server, args.seconds, r)
                    load = os.getloadavg()[0]
                    drained = _drain(databases[server]) if server in databases else 0.0
                    samples.append(dataclasses.replace(s, server=server, round=r, drain_s=drained))
                    print(
                        f"round {r + 1}/{args.rounds} {server:13s} {s.rps:8.1f} req/s  p50 {s.p50_ms:6.1f} ms  "
                        f"p99 {s.p99_ms:6.1f} ms  ({s.requests} requests, {s.errors} errors)  "
                        f"load {load:.1f}  worker caught up {drained:.1f} s after  "
                        f"CPU/request web {s.web_cpu_us:.0f} us worker {s.worker_cpu_us:.0f} us",
                        file=sys.stderr,
                    )
            stored = {name: _stored_and_applied(databases[name]) for name in stacks}
        finally:
            stop_servers(processes, logs)
    summary = median_summary(samples, servers)
    for server in servers:
        mine = [s for s in samples if s.server == server]
        summary[server]["web_cpu_us"] = statistics.median(s.web_cpu_us for s in mine)
        summary[server]["worker_cpu_us"] = statistics.median(s.worker_cpu_us for s in mine)
    return {
        "stacks": stacks,
        "samples": [asdict(s) for s in samples],
        "summary": summary,
        "stored_applied": stored,
    }


def provisioning(count: int) -> dict[str, Any]:
    """Part 2: ``count`` sessions through the video sweep vs bare zoomus, against the emulator."""
    from sqlalchemy import select
    from zoomus import ZoomClient

    from alliance.settings import Settings
    from alliance.video import provider_factory, video_config
    from core.clients import assign_occurrence, create_client, list_sessions
    from core.crypto import Keyring, MasterKeys, generate_key_text
    from core.mirror import add_connection, ensure_therapist
    from core.store import Store
    from core.store.models import Occurrence
    from core.sync import OccurrenceKey, RemoteOccurrence, sync_connection
    from core.video.service import connect_video, sweep
    from integrations.base import MemoryCalendar, MemoryProvider
    from sandbox.zoom import DEFAULT_ACCOUNT_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, ZoomState, run_zoom_emulator
    from sandbox.zoom import Settings as ZoomSettings

    with (
        tempfile.TemporaryDirectory(prefix="alliance-zoom-prov-") as tmp,
        run_zoom_emulator(ZoomState(ZoomSettings(daily_limit=10**6))) as zoom,
    ):
        store = Store.open(
            f"sqlite:///{tmp}/alliance.db", keyring=Keyring(MasterKeys.from_env_value(generate_key_text()))
        )
        therapist = ensure_therapist(store, "bench@alliance.test", timezone="Europe/Madrid")
        calendar = MemoryCalendar()
        connection = add_connection(store, therapist, "memory", "bench", {"calendar": "bench"})
        first = (datetime.now(UTC) + timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
        for i in range(count):
            start = first + timedelta(minutes=30 * i)
            calendar.put(RemoteOccurrence(OccurrenceKey(f"b{i}", ""), start, start + timedelta(minutes=25)))
        sync_connection(store, connection, MemoryProvider(calendar))
        code = create_client(store, therapist, modality="online").code
        with store.session() as session:
            ids = list(session.scalars(select(Occurrence.id)))
        for occurrence_id in ids:
            assign_occurrence(store, therapist, occurrence_id, code, modality="online")
        connect_video(
            store,
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
        settings = Settings(home=Path(tmp), zoom_api_url=zoom.api_url, zoom_oauth_url=zoom.base_url)
        # The per-host budget is Zoom's 100 a day: lifted here (the emulator's too) to time them in one go.
        config = dataclasses.replace(video_config(settings), daily_budget=count)
        began = time.perf_counter()
        outcomes = sweep(store, provider_factory(settings), config, limit=count * 2)
        elapsed = time.perf_counter() - began
        creates = zoom.state.count_requests("POST", "/meetings")
        tokens = zoom.state.tokens_issued
        meetings = len(zoom.state.meetings)
        sessions = len(list_sessions(store, therapist))
        # A second sweep right after: nothing to do, no request.
        again = sweep(store, provider_factory(settings), config, limit=count * 2)
        store.close()

        # The floor: bare zoomus, one token, the same number of creates over the same loopback.
        floor_client = ZoomClient(
            DEFAULT_CLIENT_ID,
            DEFAULT_CLIENT_SECRET,
            DEFAULT_ACCOUNT_ID,
            base_uri=zoom.api_url,
            oauth_uri=zoom.token_url,
        )
        began = time.perf_counter()
        for i in range(count):
            floor_client.meeting.create(
                user_id=zoom.state.default_user.id,
                topic="Appointment",
                type=2,
                start_time=first + timedelta(minutes=30 * i),
                duration=25,
            ).raise_for_status()
        floor_elapsed = time.perf_counter() - began
    return {
        "sessions": sessions,
        "outcomes": outcomes,
        "second_sweep": again,
        "create_requests": creates,
        "token_requests": tokens,
        "meetings": meetings,
        "seconds": elapsed,
        "floor_seconds": floor_elapsed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--skip-webhooks", action="store_true")
    parser.add_argument("--skip-provisioning", action="store_true")
    parser.add_argument(
        "--stacks",
        default="embedded",
        help=f"comma-separated, measured side by side against the floor: {', '.join(STACKS)}",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        help="another checkout (e.g. main's worktree): every stack also runs from it, side by side, as STACK@base",
    )
    parser.add_argument("--admin-url", default=DEFAULT_ADMIN_URL, help="PostgreSQL admin URL (procrastinate stack)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    result: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    failed: list[str] = []
    if not args.skip_webhooks:
        hooks = webhook_throughput(args)
        result["webhooks"] = hooks
        result["loadavg_after_webhooks"] = os.getloadavg()
        s = hooks["summary"]
        print(
            f"\nPOST {PATH} (signed participant_joined, stored once), wrk, {args.connections} connections, "
            f"{args.seconds:g} s x {args.rounds} rounds; load average {result['loadavg_at_start'][0]:.1f} at start, "
            f"{result['loadavg_after_webhooks'][0]:.1f} after"
        )
        print(
            "| server | req/s (median) | ratio | p50 ms | p99 ms | errors | stored / applied by the worker "
            "| worker caught up after (median) | CPU us/request web + worker |"
        )
        print("|---|---:|---:|---:|---:|---:|---|---:|---:|")
        hooks["ratio"] = {}
        for server in [*hooks["stacks"], "floor"]:
            v = s[server]
            ratio = v["rps"] / s["floor"]["rps"]
            stored = hooks["stored_applied"].get(server)
            print(
                f"| {server} | {v['rps']:.0f} | {ratio:.2f}x | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | "
                f"{v['errors']:.0f} | {f'{stored[0]} / {stored[1]}' if stored else ''} | "
                f"{f'{_median_drain(hooks, server):.1f} s' if stored else ''} | "
                f"{v['web_cpu_us']:.0f} + {v['worker_cpu_us']:.0f} |"
            )
            if server == "floor":
                continue
            hooks["ratio"][server] = ratio
            if ratio < TARGET_RATIO:
                failed.append(f"{server}: throughput ratio")
            if v["p99_ms"] >= TARGET_P99_MS:
                failed.append(f"{server}: ack p99")
            if v["errors"]:
                failed.append(f"{server}: webhook errors")
        print(f"\ntargets: ratio >= {TARGET_RATIO}x, ack p99 < {TARGET_P99_MS:g} ms")
    if args.skip_provisioning:
        _finish(args, result, failed)
        return
    prov = provisioning(args.sessions)
    result["provisioning"] = prov
    print(
        f"\nprovisioning {prov['sessions']} online sessions: {prov['create_requests']} create request(s), "
        f"{prov['token_requests']} token request(s), {prov['meetings']} meetings, outcomes {prov['outcomes']}, "
        f"second sweep {prov['second_sweep'] or 'no work'}; {prov['seconds']:.2f} s vs bare zoomus "
        f"{prov['floor_seconds']:.2f} s ({prov['floor_seconds'] / prov['seconds']:.2f}x)"
    )
    if prov["create_requests"] != prov["sessions"] or prov["token_requests"] != 1 or prov["second_sweep"]:
        failed.append("provisioning counts")
    _finish(args, result, failed)


def _median_drain(hooks: dict[str, Any], server: str) -> float:
    return float(statistics.median(x["drain_s"] for x in hooks["samples"] if x["server"] == server))


def _finish(args: argparse.Namespace, result: dict[str, Any], failed: list[str]) -> None:
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if failed:
        print("misses: " + ", ".join(failed))
        if args.check:
            raise SystemExit(1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "_floor":
        _serve_bare(int(sys.argv[2]))
    else:
        main()
