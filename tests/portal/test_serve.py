"""``alliance serve`` as an operator runs it: a real process on a loopback port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from core.crypto import generate_key_text


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_MASTER_KEY": key, "ALLIANCE_TIMEZONE": "UTC"})
    return env


def _wait_for(url: str, process: subprocess.Popen[str], attempts: int = 600) -> httpx.Response:
    """Poll until the server answers (bounded by attempts, not by a time assertion)."""
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError(f"alliance serve exited early: {process.communicate()[1]}")
        try:
            return httpx.get(url, timeout=5)
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("alliance serve never answered")


def test_serve_answers_and_stops_cleanly(tmp_path: Path) -> None:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "alliance", "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=_env(tmp_path / "home", generate_key_text()),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        health = _wait_for(f"http://127.0.0.1:{port}/healthz", process)
        assert health.status_code == 200 and health.json() == {"status": "ok"}
        assert httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=5).json()["info"]["title"] == "Alliance"
        assert "server" not in health.headers
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            _, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr


def test_serve_refuses_a_wrong_master_key_on_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = subprocess.run(
        [sys.executable, "-m", "alliance", "tokens", "list"],
        env=_env(home, generate_key_text()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert first.returncode == 0, first.stderr
    wrong = subprocess.run(
        [sys.executable, "-m", "alliance", "serve", "--port", str(_free_port())],
        env=_env(home, generate_key_text()),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert wrong.returncode == 1
    lines = wrong.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the master key does not match the data"), wrong.stderr
