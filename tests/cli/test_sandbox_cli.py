"""`alliance sandbox`: a newcomer starts an emulator, follows the printed steps and watches the mirror
follow an edit (Google, Outlook) or a session get its meeting (Zoom); all through the real command in
its own process."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from tests.cli.helpers import Run


@contextmanager
def _sandbox(tmp_path: Path, *names: str) -> Iterator[list[str]]:
    """``alliance sandbox NAMES`` in its own process: what it printed, once every emulator's steps
    are out; stopped by SIGTERM at the end (it must stop cleanly)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "alliance", "sandbox", *names, "--workdir", str(tmp_path / "sandbox")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "COLUMNS": "400"},
    )
    try:
        assert process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while sum(map(_last_step, lines)) < len(names):  # every emulator's block printed
            if time.monotonic() > deadline:
                raise AssertionError(f"alliance sandbox printed no steps: {lines!r}")
            line = process.stdout.readline()
            if not line:
                raise AssertionError(f"alliance sandbox ended early: {lines!r}")
            lines.append(line.rstrip("\n"))
        yield lines
    finally:
        # SIGTERM, as a supervisor or a script stops it. (Not SIGINT: a child inherits an ignored
        # SIGINT, and a test run started in the background ignores it; the sandbox then ran on.)
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=30)
    assert process.returncode == 0
    assert "stopped" in err


def _last_step(line: str) -> bool:
    """The last step an emulator prints: ``alliance events`` (calendars), the state curl (Zoom)."""
    step = line.strip()
    return step.startswith("alliance events") or (step.startswith("curl -s http") and "/state" in step)


def _exports(lines: list[str]) -> dict[str, str]:
    return dict(re.findall(r"^\s+export (ALLIANCE_\w+|NO_PROXY)=(\S+)$", "\n".join(lines), re.MULTILINE))


def _step(lines: list[str], prefix: str) -> str:
    return next(line.split("   #")[0].strip() for line in lines if line.strip().startswith(prefix))


def _session_start(table: str) -> datetime:
    (start,) = re.findall(r"(\S+)\s+│\s+\S+\s+│\s+confirmed\s+│\s+Session\s+│", table)
    return datetime.fromisoformat(start)


def test_the_sandbox_prints_how_to_aim_alliance_at_it_and_the_mirror_follows_an_edit(run: Run, tmp_path: Path) -> None:
    with _sandbox(tmp_path, "google") as lines:
        exported = _exports(lines)
        assert exported["ALLIANCE_GOOGLE_API_URL"].startswith("http://127.0.0.1:")
        assert {"ALLIANCE_GOOGLE_TOKEN_URL", "ALLIANCE_GOOGLE_CLIENT_ID", "ALLIANCE_PUBLIC_URL"} <= set(exported)
        connect = _step(lines, "alliance connect google").split()
        move = _step(lines, "curl -s -X POST")

        # Follow the printed steps: connect with the token file, see the calendar mirrored.
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


def test_the_outlook_sandbox_is_followed_the_same_way_over_https(run: Run, tmp_path: Path) -> None:
    with _sandbox(tmp_path, "outlook") as lines:
        exported = _exports(lines)
        assert exported["ALLIANCE_GRAPH_API_URL"].startswith("https://127.0.0.1:")
        assert Path(exported["ALLIANCE_MS_CA_BUNDLE"]).is_file()
        run(*_step(lines, "alliance connect outlook").split()[1:], env=exported)
        before = run("events", env=exported).stdout
        assert "Session" in before and "Supervision" in before and "Weekly session" in before

        # The printed PATCH (sent with httpx, trusting the printed CA), then a sync.
        patch = _step(lines, "curl -s --cacert")
        found = re.search(r"--cacert (\S+) -X PATCH (https://\S+) .* -d '(.+)'$", patch)
        assert found, patch
        ca, url, body = found.groups()
        answer = httpx.patch(
            url,
            content=body,
            headers={"Content-Type": "application/json"},
            verify=ssl.create_default_context(cafile=ca),
        )
        assert answer.status_code == 200, answer.text
        run("sync", env=exported)
        after = run("events", env=exported).stdout
        assert _session_start(after) - _session_start(before) == timedelta(hours=3)  # 10:00 -> 13:00


def test_the_zoom_sandbox_gives_an_online_session_of_a_sandbox_calendar_its_meeting(run: Run, tmp_path: Path) -> None:
    with _sandbox(tmp_path, "google", "zoom") as lines:
        exported = _exports(lines)
        run(*_step(lines, "alliance connect google").split()[1:], env=exported)
        code = run(*shlex.split(_step(lines, "alliance clients add"))[1:], env=exported).stdout.strip()
        events = json.loads(run("events", "--json", env=exported).stdout)
        uid = next(e["uid"] for e in events if e["title"] == "Session")
        assign = _step(lines, "alliance assign").replace("UID", uid).replace("CODE", code)
        run(*assign.split()[1:], env=exported)
        connected = run(*_step(lines, "alliance connect zoom").split()[1:], env=exported)
        assert "1 meeting(s) created" in connected.stdout

        (session,) = [s for s in json.loads(run("sessions", "--json", env=exported).stdout) if s["video"]["join_url"]]
        (state_url,) = [
            line.split()[2] for line in lines if line.strip().startswith("curl -s http") and "/state" in line
        ]
        state = httpx.get(state_url).json()
        (meeting,) = state["meetings"]
        assert session["video"]["join_url"] == meeting["join_url"] and "Sample Client" not in meeting["topic"]


def test_an_unknown_emulator_or_a_public_host_is_refused(run: Run) -> None:
    unknown = run("sandbox", "nowhere", check=False)
    assert unknown.returncode != 0 and "no emulator named 'nowhere'" in unknown.stderr
    assert "google, outlook, zoom" in unknown.stderr
    public = run("sandbox", "--host", "0.0.0.0", check=False)
    assert public.returncode != 0 and "loopback" in public.stderr
