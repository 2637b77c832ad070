"""``alliance connect zoom``, ``sessions --json`` with video links, ``video retry``: a real process and database."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.zoom import (
    DEFAULT_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    Fault,
    RunningZoom,
    run_zoom_emulator,
)
from tests.cli.helpers import Run, _event, _ics, _soon

NAME = "Brunhilde Okonkwo"


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator() as emu:
        yield emu


def _env(zoom: RunningZoom, **extra: str) -> dict[str, str]:
    return {"ALLIANCE_ZOOM_API_URL": zoom.api_url, "ALLIANCE_ZOOM_OAUTH_URL": zoom.base_url, **extra}


def _connect(run: Run, zoom: RunningZoom, *, secret: str = DEFAULT_CLIENT_SECRET, check: bool = True) -> object:
    return run(
        "connect",
        "zoom",
        "--account-id",
        DEFAULT_ACCOUNT_ID,
        "--client-id",
        DEFAULT_CLIENT_ID,
        "--client-secret",
        secret,
        "--user",
        zoom.state.default_user.email,
        env=_env(zoom),
        check=check,
    )


def _online_session(run: Run, tmp_path: Path) -> str:
    feed = tmp_path / "cal.ics"
    feed.write_text(_ics(_event("s1@test", _soon(2, hour=17), summary=f"Session {NAME}")))
    run("connect", "ics", str(feed))
    code = run("clients", "add", "--name", NAME, "--modality", "online").stdout.strip()
    run("assign", "s1@test", "--client", code)
    return code


def _sessions(run: Run, zoom: RunningZoom) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = json.loads(run("sessions", "--json", env=_env(zoom)).stdout)
    return rows


def test_connect_zoom_provisions_and_sessions_show_the_link(run: Run, zoom: RunningZoom, tmp_path: Path) -> None:
    _online_session(run, tmp_path)
    [before] = _sessions(run, zoom)
    assert before["video"]["link_status"] == "none"  # type: ignore[index]
    out = _connect(run, zoom)
    assert "1 meeting(s) created" in out.stdout  # type: ignore[attr-defined]
    [meeting] = zoom.state.meetings.values()
    assert NAME not in meeting.topic + meeting.agenda
    [row] = _sessions(run, zoom)
    video = row["video"]
    assert isinstance(video, dict)
    assert (video["provider"], video["link_status"], video["error"]) == ("zoom", "ok", None)
    assert video["join_url"] == meeting.join_url()
    status = json.loads(run("video", "status", "--json").stdout)
    assert status == {"provider": "zoom", "kind": "s2s", "health": "ok", "error": None}


def test_bad_zoom_credentials_store_nothing(run: Run, zoom: RunningZoom, tmp_path: Path) -> None:
    result = _connect(run, zoom, secret="wrong", check=False)
    assert result.returncode == 1  # type: ignore[attr-defined]
    assert "nothing was stored" in result.stderr and "wrong" not in result.stderr  # type: ignore[attr-defined]
    assert json.loads(run("video", "status", "--json").stdout) is None


def test_a_missing_link_is_shown_with_its_reason_and_retry_fixes_it(
    run: Run, zoom: RunningZoom, tmp_path: Path
) -> None:
    _online_session(run, tmp_path)
    zoom.state.inject_fault(Fault(status=503, code=503, message="down", method="POST", path_prefix="/v2/", times=50))
    _connect(run, zoom)  # the first attempt fails; retried later by the worker
    [row] = _sessions(run, zoom)
    assert row["video"]["link_status"] == "pending" and "503" in row["video"]["error"]  # type: ignore[index]
    failed = run("video", "retry", str(row["id"]), env=_env(zoom, ALLIANCE_VIDEO_MAX_ATTEMPTS="1"), check=False)
    assert failed.returncode == 1 and "missing" in failed.stdout and "503" in failed.stdout
    [row] = _sessions(run, zoom)
    assert row["video"]["link_status"] == "missing"  # type: ignore[index]
    zoom.state.faults.clear()
    fixed = json.loads(run("video", "retry", str(row["id"]), "--json", env=_env(zoom)).stdout)
    assert fixed["outcome"] == "created" and fixed["video"]["link_status"] == "ok"
    assert len(zoom.state.meetings) == 1
    unknown = run("video", "retry", "999", env=_env(zoom), check=False)
    assert unknown.returncode == 1 and "no session with id 999" in unknown.stderr
