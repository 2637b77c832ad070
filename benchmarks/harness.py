"""Pieces benchmarks share: ports, stopping servers, the median summary, children in fresh interpreters."""

from __future__ import annotations

import json
import signal
import socket
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import IO, Any, Protocol


class LoadSample(Protocol):
    server: str
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


REPO_ROOT = Path(__file__).resolve().parent.parent


def run_json_child(module: str, job: dict[str, Any]) -> dict[str, Any]:
    """``python -m module _child`` in a fresh interpreter, ``job`` as JSON on its stdin (URLs stay
    out of ``ps``); the JSON object it prints last. Its stderr is the error when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", module, "_child"],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{module} child failed (exit {done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_servers(processes: Iterable[subprocess.Popen[bytes]], logs: Iterable[IO[Any]] = ()) -> None:
    """SIGTERM every server, give each 30 s to finish, kill the stragglers, close their logs."""
    running = list(processes)
    for process in running:
        process.send_signal(signal.SIGTERM)
    for process in running:
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
    for log in logs:
        log.close()


def median_summary(
    samples: Sequence[LoadSample], servers: Sequence[str] = ("alliance", "floor")
) -> dict[str, dict[str, float]]:
    """Per server: the median req/s, p50 and p99 over the rounds, and the errors summed."""
    summary: dict[str, dict[str, float]] = {}
    for server in servers:
        mine = [s for s in samples if s.server == server]
        summary[server] = {
            "rps": statistics.median(s.rps for s in mine),
            "p50_ms": statistics.median(s.p50_ms for s in mine),
            "p99_ms": statistics.median(s.p99_ms for s in mine),
            "errors": sum(s.errors for s in mine),
        }
    return summary
