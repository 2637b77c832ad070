"""Zoom: verified-webhook throughput and ack latency vs a bare endpoint; provisioning 500 sessions.

    python -m benchmarks.zoom_webhooks [--rounds 5] [--seconds 10] [--connections 16] [--sessions 500]
                                       [--json out.json] [--check]

Part 1, ``POST /webhooks/zoom`` under load, both servers real processes under uvicorn on 127.0.0.1
with the settings ``alliance serve`` uses (one worker process):

- **alliance**: ``python -m alliance serve`` on a fresh ALLIANCE_HOME with
  ``ALLIANCE_ZOOM_WEBHOOK_SECRET`` set (its embedded worker applies the stored events alongside,
  as in production). Every request is a distinct ``meeting.participant_joined`` delivery signed
  exactly as Zoom signs (v0 HMAC over the raw body): verified, parsed and stored (one INSERT).
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


def webhook_throughput(args: argparse.Namespace) -> dict[str, Any]:
    if not shutil.which("wrk"):
        raise SystemExit("benchmark: wrk is required (apt-get install wrk)")
    from core.crypto import generate_key_text

    with tempfile.TemporaryDirectory(prefix="alliance-zoom-bench-") as tmp:
        tmpdir = Path(tmp)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        env.update(
            {
                "ALLIANCE_HOME": str(tmpdir / "home"),
                "ALLIANCE_MASTER_KEY": generate_key_text(),
                "ALLIANCE_TIMEZONE": "UTC",
                "ALLIANCE_ZOOM_WEBHOOK_SECRET": SECRET,
                "ALLIANCE_SYNC_INTERVAL_MINUTES": "1440",
            }
        )
        ports = {"alliance": free_port(), "floor": free_port()}
        urls = {name: f"http://127.0.0.1:{port}{PATH}" for name, port in ports.items()}
        script = tmpdir / "zoom.lua"
        script.write_text(_LUA)
        bodies = tmpdir / "bodies.tsv"
        processes: list[subprocess.Popen[bytes]] = []
        logs = (tmpdir / "alliance.log").open("wb"), (tmpdir / "floor.log").open("wb")
        samples: list[Sample] = []
        try:
            processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "alliance",
                        "serve",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(ports["alliance"]),
                    ],
                    env=env,
                    stdout=logs[0],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(f"http://127.0.0.1:{ports['alliance']}/healthz", processes[0])
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.zoom_webhooks", "_floor", str(ports["floor"])],
                    env=env,
                    stdout=logs[1],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(f"http://127.0.0.1:{ports['floor']}/", processes[1])
            # The alliance endpoint really verifies: an unsigned delivery is refused.
            if httpx.post(urls["alliance"], content=b"{}", timeout=10, trust_env=False).status_code != 401:
                raise SystemExit("benchmark: the webhook accepted an unsigned delivery")

            def measure(server: str, seconds: float, round_no: int) -> Sample:
                _signed_bodies(bodies, BODIES, round_no)
                return _wrk(urls[server], seconds, args.connections, args.threads, script, bodies)

            for server in ("alliance", "floor"):
                measure(server, min(3.0, args.seconds), -1)
            for r in range(args.rounds):
                for server in ("alliance", "floor") if r % 2 == 0 else ("floor", "alliance"):
                    s = measure(server, args.seconds, r)
                    samples.append(dataclasses.replace(s, server=server, round=r))
                    print(
                        f"round {r + 1}/{args.rounds} {server:8s} {s.rps:8.1f} req/s  p50 {s.p50_ms:6.1f} ms  "
                        f"p99 {s.p99_ms:6.1f} ms  ({s.requests} requests, {s.errors} errors)",
                        file=sys.stderr,
                    )
        finally:
            stop_servers(processes, logs)
    summary = median_summary(samples)
    return {"samples": [asdict(s) for s in samples], "summary": summary}


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
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    result: dict[str, Any] = {"loadavg_at_start": os.getloadavg()}
    failed: list[str] = []
    if not args.skip_webhooks:
        hooks = webhook_throughput(args)
        result["webhooks"] = hooks
        s = hooks["summary"]
        ratio = s["alliance"]["rps"] / s["floor"]["rps"]
        hooks["ratio"] = ratio
        print(
            f"\nPOST {PATH} (signed participant_joined, stored once), wrk, {args.connections} connections, "
            f"{args.seconds:g} s x {args.rounds} rounds"
        )
        print("| server | req/s (median) | p50 ms | p99 ms | errors |")
        print("|---|---:|---:|---:|---:|")
        for server in ("alliance", "floor"):
            v = s[server]
            print(f"| {server} | {v['rps']:.0f} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['errors']:.0f} |")
        print(
            f"\nratio alliance / floor: {ratio:.2f}x (target >= {TARGET_RATIO}x); "
            f"alliance ack p99 {s['alliance']['p99_ms']:.1f} ms (target < {TARGET_P99_MS:g} ms)"
        )
        if ratio < TARGET_RATIO:
            failed.append("throughput ratio")
        if s["alliance"]["p99_ms"] >= TARGET_P99_MS:
            failed.append("ack p99")
        if s["alliance"]["errors"]:
            failed.append("webhook errors")
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
