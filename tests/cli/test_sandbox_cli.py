"""`alliance sandbox`: a newcomer starts the Google emulator, follows the printed steps and watches the
mirror follow an edit; all through the real command in its own process."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from tests.cli.helpers import Run


def _read_until_running(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.strip().startswith("alliance events"):
            return lines
    raise AssertionError(f"alliance sandbox printed no steps: {lines!r}")


def _session_start(table: str) -> datetime:
    (start,) = re.findall(r"(\S+)\s+│\s+\S+\s+│\s+confirmed\s+│\s+Session\s+│", table)
    return datetime.fromisoformat(start)


def test_the_sandbox_prints_how_to_aim_alliance_at_it_and_the_mirror_follows_an_edit(run: Run, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "alliance", "sandbox", "google", "--workdir", str(tmp_path / "sandbox")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "COLUMNS": "400"},
    )
    try:
        lines = _read_until_running(process)
        exported = dict(re.findall(r"^\s+export (ALLIANCE_\w+|NO_PROXY)=(\S+)$", "\n".join(lines), re.MULTILINE))
        assert exported["ALLIANCE_GOOGLE_API_URL"].startswith("http://127.0.0.1:")
        assert {"ALLIANCE_GOOGLE_TOKEN_URL", "ALLIANCE_GOOGLE_CLIENT_ID", "ALLIANCE_PUBLIC_URL"} <= set(exported)
        connect = next(line.split("#")[0].split() for line in lines if "alliance connect google" in line)
        move = next(line.strip() for line in lines if line.strip().startswith("curl -s -X POST"))

        # Follow the printed steps: connect with the token file, see the calendar mirrored.
        assert connect[:3] == ["alliance", "connect", "google"]
        run(*connect[1:], env=exported)
        before = run("events", env=exported).stdout
        assert "Session" in before and "Supervision" in before and "Weekly session" in before

        # An edit in the emulator (the printed curl, sent with httpx), then a sync: the mirror follows.
        url = re.search(r"(http://\S+/move)", move)
        body = re.search(r"-d '(.+)'$", move)
        assert url and body
        moved = httpx.post(url.group(1), content=body.group(1), headers={"Content-Type": "application/json"})
        assert moved.status_code == 200, moved.text
        run("sync", env=exported)
        after = run("events", env=exported).stdout
        assert _session_start(after) - _session_start(before) == timedelta(hours=3)  # 10:00 -> 13:00
    finally:
        # SIGTERM, as a supervisor or a script stops it. (Not SIGINT: a child inherits an ignored
        # SIGINT, and a test run started in the background ignores it; the sandbox then ran on.)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stopped" in err


def test_an_unknown_emulator_or_a_public_host_is_refused(run: Run) -> None:
    unknown = run("sandbox", "nowhere", check=False)
    assert unknown.returncode != 0 and "no emulator named 'nowhere'" in unknown.stderr and "google" in unknown.stderr
    public = run("sandbox", "--host", "0.0.0.0", check=False)
    assert public.returncode != 0 and "loopback" in public.stderr
