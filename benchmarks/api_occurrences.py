"""Requests per second of ``GET /api/v1/occurrences`` against a bare FastAPI endpoint, in one run.

    python -m benchmarks.api_occurrences [--rounds 5] [--seconds 10] [--connections 16] [--json out.json] [--check]

Both servers are real processes under uvicorn on 127.0.0.1 with the settings ``alliance serve`` uses
(``access_log=False, log_config=None, server_header=False``, one worker process):

- **alliance**: ``python -m alliance serve`` on a fresh ALLIANCE_HOME holding one therapist, an API
  token and one ICS connection whose window of the request holds exactly 100 occurrences. Each
  request resolves the bearer token, queries the window and decrypts the 100 titles (the embedded
  worker runs alongside, as in production).
- **floor**: a FastAPI app with one ``async def`` route at the same path returning, from memory, the
  very JSON the alliance server answered (a list of 100 dicts, encoded by FastAPI per request).

The load generator is ``wrk`` (``apt-get install wrk``) when installed, else a bounded asyncio loop of
httpx clients; either way N concurrent connections for T seconds, loopback only, the same for both.
Rounds are interleaved (alliance, floor, floor, alliance, ...) after one discarded warm-up each; the
table shows the median requests per second, the ratio alliance / floor (target >= 0.5) and the
median of the rounds' p50 and p99 latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
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

TARGET = 0.5
OCCURRENCES = 100
PATH = "/api/v1/occurrences"


@dataclass(frozen=True)
class Sample:
    server: str
    round: int
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int


# -- the two servers -----------------------------------------------------------------------------


def _ics(first: datetime) -> bytes:
    """100 single events one hour apart, each with a distinct title (a realistic, decryptable payload)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Alliance benchmark//EN"]
    for i in range(OCCURRENCES):
        start = first + timedelta(hours=i)
        lines += [
            "BEGIN:VEVENT",
            f"UID:bench-{i}@alliance.test",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{start:%Y%m%dT%H%M%SZ}",
            f"DTEND:{start + timedelta(minutes=50):%Y%m%dT%H%M%SZ}",
            f"SUMMARY:Session {i:03d} with client K{i:03d}",
            f"LOCATION:Room {i % 7}\\, Calle Mayor 12\\, Madrid",
            "DESCRIPTION:Join: https://us02web.zoom.us/j/8123456789" + str(i % 10),
            "END:VEVENT",
        ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def _seed(home: Path, env: dict[str, str]) -> tuple[str, dict[str, str]]:
    """Fill a fresh home (in this process); return the API token and the query window."""
    from alliance.keys import open_store
    from alliance.settings import Settings
    from alliance.syncing import sync_one
    from core.accounts import create_api_token, create_therapist
    from core.mirror import add_connection, get_connection

    first = (datetime.now(UTC) + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    feed = home / "bench.ics"
    home.mkdir(parents=True, exist_ok=True)
    feed.write_bytes(_ics(first))
    settings = Settings(home=home, master_key=env["ALLIANCE_MASTER_KEY"], timezone="UTC")  # type: ignore[arg-type]
    store = open_store(settings)
    try:
        therapist = create_therapist(store, "bench@alliance.test")
        token = create_api_token(store, therapist, "bench").token
        connection_id = add_connection(store, therapist, "ics", "bench", {"source": str(feed)})
        view = get_connection(store, therapist, connection_id)
        if view is None or not sync_one(store, settings, view).ok:
            raise SystemExit("benchmark: seeding the connection failed")
    finally:
        store.close()
    window = {"from": first.isoformat(), "to": (first + timedelta(hours=OCCURRENCES)).isoformat()}
    return token, window


def _bare_app(payload_file: Path) -> Any:
    from fastapi import FastAPI

    payload = json.loads(payload_file.read_bytes())
    app = FastAPI()

    @app.get(PATH)
    async def occurrences() -> Any:
        return payload

    return app


def _serve_bare(port: int, payload_file: Path) -> None:
    import uvicorn

    # The settings alliance.cli.serve passes to uvicorn.
    uvicorn.run(
        _bare_app(payload_file),
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


# -- load ----------------------------------------------------------------------------------------

_WRK_LATENCY = re.compile(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _wrk(url: str, headers: dict[str, str], seconds: float, connections: int, threads: int, script: Path) -> Sample:
    # Headers go through a Lua script (a 0600 file), so the token is not on a command line in `ps`.
    lines = [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    script.write_text("\n".join(lines) + "\n")
    script.chmod(0o600)
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


async def _httpx_load(url: str, headers: dict[str, str], seconds: float, connections: int, limit: int) -> Sample:
    """N clients in a loop until the deadline or ``limit`` requests in all: bounded in time and count."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def one(client: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline and len(latencies) + errors < limit:
            started = time.perf_counter()
            response = await client.get(url, headers=headers)
            await response.aread()
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
            else:
                errors += 1

    began = time.perf_counter()
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=30, trust_env=False) as client:
        await asyncio.gather(*(one(client) for _ in range(connections)))
    elapsed = time.perf_counter() - began
    ordered = sorted(latencies) or [0.0]
    return Sample(
        "",
        0,
        len(latencies) / elapsed,
        ordered[len(ordered) // 2],
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        len(latencies) + errors,
        errors,
    )


# -- run -----------------------------------------------------------------------------------------


def _machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import fastapi
    import uvicorn

    return {
        "cpu": model or platform.processor(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "loadavg_at_start": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per server (median reported)")
    parser.add_argument("--seconds", type=float, default=10.0, help="load time per round")
    parser.add_argument("--connections", type=int, default=16, help="concurrent connections")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--loader", choices=("auto", "wrk", "httpx"), default="auto")
    parser.add_argument("--limit", type=int, default=200_000, help="httpx loader: most requests per round")
    parser.add_argument("--json", type=Path, help="write every sample, the summary and the machine here")
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is below the target")
    args = parser.parse_args()
    loader = args.loader if args.loader != "auto" else ("wrk" if shutil.which("wrk") else "httpx")

    with tempfile.TemporaryDirectory(prefix="alliance-bench-") as tmp:
        tmpdir = Path(tmp)
        from core.crypto import generate_key_text

        home = tmpdir / "home"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        env.update(
            {
                "ALLIANCE_HOME": str(home),
                "ALLIANCE_MASTER_KEY": generate_key_text(),
                "ALLIANCE_TIMEZONE": "UTC",
                # The feed is a local file that never changes; a day's interval keeps the periodic
                # sync (harmless, but noise) out of the measured seconds.
                "ALLIANCE_SYNC_INTERVAL_MINUTES": "1440",
            }
        )
        token, window = _seed(home, env)
        headers = {"Authorization": f"Bearer {token}"}
        alliance_port, floor_port = free_port(), free_port()
        query = "?" + "&".join(f"{k}={v.replace('+', '%2B')}" for k, v in window.items())
        urls = {
            "alliance": f"http://127.0.0.1:{alliance_port}{PATH}{query}",
            "floor": f"http://127.0.0.1:{floor_port}{PATH}{query}",
        }
        processes: list[subprocess.Popen[bytes]] = []
        logs = (tmpdir / "alliance.log").open("wb"), (tmpdir / "floor.log").open("wb")
        try:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "alliance", "serve", "--host", "127.0.0.1", "--port", str(alliance_port)],
                    env=env,
                    stdout=logs[0],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(f"http://127.0.0.1:{alliance_port}/healthz", processes[0])
            answer = httpx.get(urls["alliance"], headers=headers, timeout=30, trust_env=False)
            answer.raise_for_status()
            body = answer.json()
            if len(body) != OCCURRENCES or not all(o["title"].startswith("Session ") for o in body):
                raise SystemExit(f"benchmark: expected {OCCURRENCES} decrypted occurrences, got {len(body)}")
            payload_file = tmpdir / "payload.json"
            payload_file.write_bytes(answer.content)
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.api_occurrences", "_floor", str(floor_port), str(payload_file)],
                    env=env,
                    stdout=logs[1],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(urls["floor"], processes[1])
            floor_answer = httpx.get(urls["floor"], timeout=30, trust_env=False)
            if floor_answer.json() != body:
                raise SystemExit("benchmark: the floor does not answer the same JSON")

            def measure(server: str, seconds: float) -> Sample:
                if loader == "wrk":
                    return _wrk(urls[server], headers, seconds, args.connections, args.threads, tmpdir / "h.lua")
                return asyncio.run(_httpx_load(urls[server], headers, seconds, args.connections, args.limit))

            for server in ("alliance", "floor"):  # warm-up, discarded
                measure(server, min(3.0, args.seconds))
            samples: list[Sample] = []
            for r in range(args.rounds):
                order = ("alliance", "floor") if r % 2 == 0 else ("floor", "alliance")
                for server in order:
                    s = measure(server, args.seconds)
                    samples.append(Sample(server, r, s.rps, s.p50_ms, s.p99_ms, s.requests, s.errors))
                    print(
                        f"round {r + 1}/{args.rounds} {server:8s} {s.rps:8.1f} req/s  p50 {s.p50_ms:6.1f} ms  "
                        f"p99 {s.p99_ms:6.1f} ms  ({s.requests} requests, {s.errors} errors)",
                        file=sys.stderr,
                    )
        finally:
            stop_servers(processes, logs)

    summary = median_summary(samples)
    ratio = summary["alliance"]["rps"] / summary["floor"]["rps"]
    verdict = "meets" if ratio >= TARGET else "misses"
    print(
        f"\nGET {PATH} ({OCCURRENCES} occurrences), {loader}, {args.connections} connections, "
        f"{args.seconds:g} s x {args.rounds} rounds"
    )
    print("| server | req/s (median) | p50 ms | p99 ms | errors |")
    print("|---|---:|---:|---:|---:|")
    for server in ("alliance", "floor"):
        v = summary[server]
        print(f"| {server} | {v['rps']:.0f} | {v['p50_ms']:.1f} | {v['p99_ms']:.1f} | {v['errors']:.0f} |")
    print(f"\nratio alliance / floor: {ratio:.2f}x (target >= {TARGET}x): {verdict} the target")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": _machine(),
                    "loader": loader,
                    "connections": args.connections,
                    "seconds": args.seconds,
                    "rounds": args.rounds,
                    "samples": [asdict(s) for s in samples],
                    "summary": summary,
                    "ratio": ratio,
                    "target": TARGET,
                },
                indent=2,
            )
        )
    if args.check and ratio < TARGET:
        raise SystemExit(1)
    if summary["alliance"]["errors"] or summary["floor"]["errors"]:
        raise SystemExit("benchmark: some requests failed (see the errors column)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_floor":
        _serve_bare(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
