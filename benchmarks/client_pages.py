"""The client's pages: bytes a phone downloads per page, and server latency with 200 clients at once.

    python -m benchmarks.client_pages [--clients 200] [--per-second 1] [--seconds 10] [--rounds 4] [--json F] [--check]

Setup: a fresh ALLIANCE_HOME with one therapist, an ICS connection holding a daily series of
``--clients`` future sessions (each with a Zoom link) and 5 past ones, all assigned to one client
(zone Europe/Madrid), and one client link per session. Two real server processes on 127.0.0.1,
both under uvicorn with ``alliance serve``'s settings (one worker, access log off):

- **alliance**: ``python -m alliance serve``; ``GET /c/{token}`` looks the token's hash up (one
  query), decrypts the event (video link), the client's details (zone) and the check-in, formats
  the time with Babel in the browser's language and renders the Jinja2 template.
- **floor**: a bare FastAPI app answering ``GET /c/{token}`` with the very HTML alliance rendered for
  that token, from memory (the same bytes over the same HTTP stack: no database, no crypto, no
  template).

Measured in one run (needs ``wrk`` and ``/usr/bin/chromium``):

1. **Transfer per page** (target <= 60 KB): a fresh headless Chromium context (no cache) per page;
   the bytes on the wire are the sum of ``encodedDataLength`` of every response (HTML, CSS, JS,
   headers included) from the DevTools protocol. Pages: before an online session, before an
   in-person one (no checklist, device check or script), the rating form, the thanks page (a rated
   session), the not-found page.
1b. **Render time per page**: one request at a time on a kept-alive connection, alliance and the
   floor alternating request by request (``--render-loads`` each); median and p99.
2. **Latency at 200 concurrent clients** (target p99 < 50 ms): ``wrk -c<clients>``, one connection
   per client, each on its own link, pausing 0.5-1.5 s between page loads (``delay()`` in the Lua
   script: about ``--per-second`` loads per client per second, a person reading a page rather than
   a flood). wrk's latency is from request to complete answer; the pause is not counted. Rounds
   interleave alliance and floor after a discarded warm-up; the table gives the median of the rounds.
3. **Saturation** (informational): the same 200 connections without pauses, as fast as the server
   answers: requests per second and the ratio alliance / floor.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

TRANSFER_LIMIT = 60 * 1024
P99_LIMIT_MS = 50.0
CHROMIUM = os.environ.get("ALLIANCE_CHROMIUM", "/usr/bin/chromium")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ics(first: datetime, future: int) -> bytes:
    fmt = "%Y%m%dT%H%M%SZ"
    past = first - timedelta(days=6)
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Alliance benchmark//EN"]
    for uid, start, count in (("future@bench", first, future), ("past@bench", past, 5)):
        lines += [
            "BEGIN:VEVENT",
            f"UID:{uid}",
            "DTSTAMP:20260101T000000Z",
            f"DTSTART:{start:{fmt}}",
            f"DTEND:{start + timedelta(minutes=50):{fmt}}",
            f"RRULE:FREQ=DAILY;COUNT={count}",
            "SUMMARY:Appointment",
            "LOCATION:https://us02web.zoom.us/j/81234567890",
            "END:VEVENT",
        ]
    # One in-person appointment (no video link: the session's modality defaults to in person).
    lines += [
        "BEGIN:VEVENT",
        "UID:inperson@bench",
        "DTSTAMP:20260101T000000Z",
        f"DTSTART:{first + timedelta(hours=3):{fmt}}",
        f"DTEND:{first + timedelta(hours=3, minutes=50):{fmt}}",
        "SUMMARY:Appointment",
        "END:VEVENT",
    ]
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def _seed(home: Path, env: dict[str, str], clients: int) -> tuple[list[str], list[str], str]:
    """Fill a fresh home; return (tokens of future online sessions, of past ones, of the in-person one)."""
    from alliance.keys import open_store
    from alliance.settings import Settings
    from alliance.syncing import sync_one
    from core.accounts import create_therapist
    from core.clients import assign_series, create_client, list_sessions
    from core.links import issue_link
    from core.mirror import add_connection, get_connection

    first = (datetime.now(UTC) + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    home.mkdir(parents=True, exist_ok=True)
    feed = home / "bench.ics"
    feed.write_bytes(_ics(first, clients))
    settings = Settings(home=home, master_key=env["ALLIANCE_MASTER_KEY"], timezone="UTC")  # type: ignore[arg-type]
    store = open_store(settings)
    try:
        therapist = create_therapist(store, "bench@alliance.test")
        connection_id = add_connection(store, therapist, "ics", "bench", {"source": str(feed)})
        view = get_connection(store, therapist, connection_id)
        if view is None or not sync_one(store, settings, view).ok:
            raise SystemExit("benchmark: seeding the connection failed")
        code = create_client(store, therapist, name="Bench Client", timezone="Europe/Madrid").code
        for uid in ("future@bench", "past@bench", "inperson@bench"):
            assign_series(store, therapist, connection_id, uid, code, from_start=first - timedelta(days=30))
        future, past, in_person = [], [], []
        for s in list_sessions(store, therapist):
            token = issue_link(store, therapist, s.id)
            (in_person if s.uid == "inperson@bench" else future if s.start >= first else past).append(token)
    finally:
        store.close()
    if len(future) != clients or len(past) != 5 or len(in_person) != 1:
        raise SystemExit(
            f"benchmark: expected {clients} future, 5 past and 1 in-person session, "
            f"got {len(future)}, {len(past)}, {len(in_person)}"
        )
    return future, past, in_person[0]


# -- the floor ----------------------------------------------------------------------------------


def _serve_floor(port: int, pages_file: Path) -> None:
    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import HTMLResponse

    pages: dict[str, str] = json.loads(pages_file.read_text())
    app = FastAPI()

    @app.get("/c/{token}")
    async def page(token: str) -> HTMLResponse:
        return HTMLResponse(pages[token])

    uvicorn.run(
        app, host="127.0.0.1", port=port, access_log=False, log_level="info", log_config=None, server_header=False
    )


def _wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        if process.poll() is not None:
            raise SystemExit(f"benchmark: a server exited early ({url})")
        try:
            httpx.get(url, timeout=5, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"benchmark: {url} never answered")


# -- 1. transfer in Chromium --------------------------------------------------------------------


def client_pages(base: str, future: str, in_person: str, rating: str, rated: str) -> dict[str, str]:
    """The measured pages: name -> URL."""
    return {
        "before the session (online)": f"{base}/c/{future}",
        "before the session (in person)": f"{base}/c/{in_person}",
        "rating": f"{base}/c/{rating}",
        "thanks (rating received)": f"{base}/c/{rated}",
        "not found": f"{base}/c/{future[:-4]}zzzz",
    }


def transfer_sizes(pages: dict[str, str]) -> dict[str, int]:
    """Bytes on the wire per page, each in a fresh browser context (nothing cached)."""
    from playwright.sync_api import sync_playwright

    sizes: dict[str, int] = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            for name, url in pages.items():
                context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, locale="en-US")
                page = context.new_page()
                cdp = context.new_cdp_session(page)
                cdp.send("Network.enable")
                total = [0]

                def finished(event: dict[str, Any], total: list[int] = total) -> None:
                    total[0] += int(event["encodedDataLength"])

                cdp.on("Network.loadingFinished", finished)
                page.goto(url)
                page.wait_for_load_state("networkidle")
                sizes[name] = total[0]
                context.close()
        finally:
            browser.close()
    return sizes


# -- 1b. render time per page, one request at a time -------------------------------------------


def render_times(bases: dict[str, str], pages: dict[str, str], loads: int) -> dict[str, dict[str, float]]:
    """Per page: median and p99 of one-at-a-time loads (kept-alive connection), alliance and floor
    alternating request by request, so both see the same machine."""
    out: dict[str, dict[str, float]] = {}
    clients = {
        name: httpx.Client(base_url=base, trust_env=False, headers={"accept": "text/html"})
        for name, base in bases.items()
    }
    try:
        for page, path in pages.items():
            times: dict[str, list[float]] = {name: [] for name in bases}
            for i in range(loads + 10):
                for name, client in clients.items():
                    started = time.perf_counter()
                    client.get(path).read()
                    if i >= 10:  # the first ten warm up
                        times[name].append((time.perf_counter() - started) * 1000)
            out[page] = {}
            for name, values in times.items():
                values.sort()
                out[page][f"{name}_p50_ms"] = round(statistics.median(values), 2)
                out[page][f"{name}_p99_ms"] = round(values[min(len(values) - 1, int(len(values) * 0.99))], 2)
    finally:
        for client in clients.values():
            client.close()
    return out


# -- 2 and 3. load with wrk ----------------------------------------------------------------------


def _cpu_seconds(pid: int) -> float:
    """CPU time (user + system) the server process has used so far, from /proc (Linux).

    Server CPU per page hardly moves with the machine's load, unlike latency: the figure to
    compare two builds by on shared cores.
    """
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wrk(
    base: str, tokens: list[str], seconds: int, connections: int, script: Path, pace_ms: int | None
) -> dict[str, float]:
    """wrk over the links, round robin; with ``pace_ms`` each connection waits 0.5-1.5x that between requests.

    wrk's latency is from sending a request to its full answer, so the pause is not counted.
    """
    paths = ",".join(f'"/c/{t}"' for t in tokens)
    pause = f"delay = function()\n  return math.random({pace_ms // 2}, {pace_ms * 3 // 2})\nend\n" if pace_ms else ""
    script.write_text(
        f"local paths = {{{paths}}}\nlocal i = 0\n"
        'wrk.headers["Accept"] = "text/html"\n'
        "request = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend\n" + pause
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    unit = {"us": 0.001, "ms": 1.0, "s": 1000.0}
    lat = {
        p: float(v) * unit[u] for p, v, u in re.findall(r"^\s*(50|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    }
    errors = 0.0
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if non_2xx:
        errors += float(non_2xx.group(1))
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if sockets:
        errors += sum(float(g) for g in sockets.groups())
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "requests": float(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": lat["50"],
        "p99_ms": lat["99"],
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--per-second", type=float, default=1.0, help="page loads per client per second")
    parser.add_argument("--render-loads", type=int, default=100, help="one-at-a-time loads per page and server")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    seconds = args.seconds
    load_before = os.getloadavg()[0]
    if subprocess.run(["which", "wrk"], capture_output=True).returncode != 0:
        raise SystemExit("benchmark: needs wrk (apt-get install -y wrk)")

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
                "ALLIANCE_SYNC_INTERVAL_MINUTES": "1440",
                # 200 clients behind one address (loopback) are not an attack.
                "ALLIANCE_LINK_FAILURES_PER_MINUTE": "10000",
            }
        )
        future, past, in_person = _seed(home, env, args.clients)
        ports = {"alliance": _free_port(), "floor": _free_port()}
        bases = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        logs = [(tmpdir / f"{n}.log").open("wb") for n in ports]
        processes: list[subprocess.Popen[bytes]] = []
        try:
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "alliance", "serve", "--port", str(ports["alliance"])],
                    env=env,
                    stdout=logs[0],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(f"{bases['alliance']}/healthz", processes[0])
            sent = httpx.post(
                f"{bases['alliance']}/c/{past[1]}/rating",
                data={"bond": "9", "goals": "9", "approach": "9", "overall": "9"},
                trust_env=False,
            )
            if sent.status_code != 303:
                raise SystemExit(f"benchmark: rating the past session failed ({sent.status_code})")
            rendered = {
                t: httpx.get(f"{bases['alliance']}/c/{t}", headers={"accept": "text/html"}, trust_env=False).text
                for t in future
            }
            if not all("Before you start" in html for html in rendered.values()):
                raise SystemExit("benchmark: alliance did not render the before-session page for every link")
            pages = client_pages("", future[0], in_person, past[0], past[1])
            # The floor also answers the other measured pages, with alliance's bytes for them.
            for path in pages.values():
                got = httpx.get(f"{bases['alliance']}{path}", headers={"accept": "text/html"}, trust_env=False)
                rendered[path.removeprefix("/c/")] = got.text
            if "client.js" in rendered[in_person]:
                raise SystemExit("benchmark: the in-person page offers a call")
            pages_file = tmpdir / "pages.json"
            pages_file.write_text(json.dumps(rendered))
            processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "benchmarks.client_pages", "_floor", str(ports["floor"]), str(pages_file)],
                    env=env,
                    stdout=logs[1],
                    stderr=subprocess.STDOUT,
                )
            )
            _wait_ready(f"{bases['floor']}/c/{future[0]}", processes[1])
            sizes = transfer_sizes({name: f"{bases['alliance']}{path}" for name, path in pages.items()})
            render = render_times(bases, pages, args.render_loads)

            pace_ms = round(1000 / args.per_second)
            script = tmpdir / "paths.lua"
            for name in ("alliance", "floor"):  # warm-up, discarded
                _wrk(bases[name], future, 2, args.clients, script, pace_ms)
            rounds: dict[str, list[dict[str, float]]] = {"alliance": [], "floor": []}
            for r in range(args.rounds):
                for name in ("alliance", "floor") if r % 2 == 0 else ("floor", "alliance"):
                    pid = processes[0 if name == "alliance" else 1].pid
                    before = _cpu_seconds(pid)
                    row = _wrk(bases[name], future, seconds, args.clients, script, pace_ms)
                    row["cpu_ms_per_page"] = round((_cpu_seconds(pid) - before) * 1000 / max(row["requests"], 1), 3)
                    rounds[name].append(row)
            saturation = {name: _wrk(bases[name], future, seconds, args.clients, script, None) for name in bases}
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)
            for process in processes:
                try:
                    process.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
            for log in logs:
                log.close()

    paced = {
        name: {
            "requests": int(sum(r["requests"] for r in rows)),
            "errors": int(sum(r["errors"] for r in rows)),
            "rps": round(statistics.median(r["rps"] for r in rows), 1),
            "p50_ms": round(statistics.median(r["p50_ms"] for r in rows), 2),
            "p99_ms": round(statistics.median(r["p99_ms"] for r in rows), 2),
            "worst_p99_ms": round(max(r["p99_ms"] for r in rows), 2),
            "cpu_ms_per_page": round(statistics.median(r["cpu_ms_per_page"] for r in rows), 3),
        }
        for name, rows in rounds.items()
    }
    ratio = saturation["alliance"]["rps"] / saturation["floor"]["rps"]
    result: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "system": platform.platform()},
        "clients": args.clients,
        "per_second": args.per_second,
        "rounds": args.rounds,
        "seconds": seconds,
        "transfer_bytes": sizes,
        "render_ms": render,
        "load_average": {"start": round(load_before, 2), "end": round(os.getloadavg()[0], 2)},
        "paced": paced,
        "paced_rounds": rounds,
        "saturation": saturation,
        "saturation_ratio": round(ratio, 3),
    }
    ok_transfer = all(v <= TRANSFER_LIMIT for v in sizes.values())
    ok_latency = paced["alliance"]["p99_ms"] < P99_LIMIT_MS and paced["alliance"]["errors"] == 0
    result["targets_met"] = {"transfer": ok_transfer, "p99": ok_latency}

    print(f"client pages: {args.clients} clients, ~{args.per_second}/s each, {args.rounds} rounds of {seconds}s")
    print("\n| page | bytes on the wire | target |\n|---|---:|---:|")
    for name, size in sizes.items():
        print(f"| {name} | {size:,} ({size / 1024:.1f} KB) | <= 60 KB |")
    print("\n| render, one at a time | alliance p50 ms | p99 ms | floor p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    for name, row in render.items():
        print(
            f"| {name} | {row['alliance_p50_ms']} | {row['alliance_p99_ms']} | {row['floor_p50_ms']} "
            f"| {row['floor_p99_ms']} |"
        )
    print("\n| paced | requests | errors | req/s | p50 ms | p99 ms (median) | worst p99 ms | server CPU/page |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in paced.items():
        print(
            f"| {name} | {row['requests']} | {row['errors']} | {row['rps']} | {row['p50_ms']} | {row['p99_ms']} "
            f"| {row['worst_p99_ms']} | {row['cpu_ms_per_page']} ms |"
        )
    print("\n| saturation | req/s | p50 ms | p99 ms | errors |\n|---|---:|---:|---:|---:|")
    for name, row in saturation.items():
        print(f"| {name} | {row['rps']:.0f} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['errors']:.0f} |")
    print(f"\nalliance / floor requests per second at saturation: {ratio:.2f}x")
    print(f"load average: {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end")
    print(f"targets: transfer {'met' if ok_transfer else 'MISSED'}, p99 < 50 ms {'met' if ok_latency else 'MISSED'}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.check and not (ok_transfer and ok_latency):
        sys.exit(1)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "_floor":
        _serve_floor(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        main()
