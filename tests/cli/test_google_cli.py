"""`alliance connect google`: the OAuth code flow end to end, token files, failures that add nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from alliance.cli.common import open_env
from alliance.jobs import build_registry
from alliance.push import maintain_channels
from integrations.google.settings import SCOPES
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GoogleState, RunningEmulator, run_google_emulator
from tests.cli.helpers import Run
from tests.conftest import TEST_MASTER_KEY
from tests.integrations.alliance_server import settings_for
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld, at, env_for, timed


@pytest.fixture(scope="module")
def google_emulator() -> Iterator[RunningEmulator]:
    with run_google_emulator(GoogleState(time_zone=MADRID, seed=23)) as emu:
        yield emu


@pytest.fixture
def google(google_emulator: RunningEmulator) -> GoogleWorld:
    world = GoogleWorld(google_emulator)
    world.reset()
    world.seed({"summary": "Session", **timed(at(2))})
    world.seed({"summary": "Weekly", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=3"], **timed(at(3), tz=MADRID)})
    return world


class SignIn:
    """`alliance connect google` running in its own process, waiting for the browser."""

    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        full_env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": MADRID, "COLUMNS": "200", **env})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alliance", "connect", "google", "--no-browser", "--timeout", "60", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=full_env,
        )
        self.printed: list[str] = []

    def authorization_url(self, prefix: str) -> str:
        assert self.process.stderr is not None
        for line in self.process.stderr:  # blocks until the address is printed
            self.printed.append(line)
            if line.startswith(prefix):
                return line.strip()
        raise AssertionError(f"no authorization address printed: {''.join(self.printed)}")

    def finish(self) -> tuple[int, str, str]:
        out, err = self.process.communicate(timeout=60)
        return self.process.returncode, out, "".join(self.printed) + err


def _connections(run: Run, env: dict[str, str]) -> list[dict[str, object]]:
    result: list[dict[str, object]] = json.loads(run("connections", "--json", env=env).stdout)
    return result


def test_the_oauth_code_flow_connects_and_runs_the_first_sync(google: GoogleWorld, run: Run, home: Path) -> None:
    google.state.settings.require_pkce = True
    env = env_for(google.emu)
    sign_in = SignIn(home, env)

    url = sign_in.authorization_url(google.emu.authorize_url)
    query = parse_qs(urlsplit(url).query)
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [DEFAULT_CLIENT_ID]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:") and query["state"][0]
    # The browser: the emulator consents and redirects to the one-shot listener.
    page = httpx.get(url, follow_redirects=True, timeout=30)
    assert page.status_code == 200 and "close this tab" in page.text

    code, out, err = sign_in.finish()
    assert code == 0, err
    assert "connected 'google'" in out and "4 created" in out
    (connection,) = _connections(run, env)
    assert (connection["provider"], connection["health"], connection["occurrences"]) == ("google", "ok", 4)
    assert "4/0A" not in err  # the authorization code is never printed or logged
    events = json.loads(run("events", "--json", "--to", at(30).date().isoformat(), env=env).stdout)
    assert sorted(e["title"] for e in events) == ["Session", "Weekly", "Weekly", "Weekly"]


def test_a_forged_redirect_is_refused_and_adds_nothing(google: GoogleWorld, run: Run, home: Path) -> None:
    env = env_for(google.emu)
    sign_in = SignIn(home, env)
    url = sign_in.authorization_url(google.emu.authorize_url)
    listener = parse_qs(urlsplit(url).query)["redirect_uri"][0]

    httpx.get(listener, params={"code": "4/0Aforged", "state": "not-the-state"}, timeout=30)

    code, _, err = sign_in.finish()
    assert code == 1 and "state mismatch" in err and "nothing was added" in err
    assert _connections(run, env) == []
    assert not google.state.requests("/token")  # the forged code was never exchanged


def test_a_denied_consent_adds_nothing(google: GoogleWorld, run: Run, home: Path) -> None:
    google.state.settings.consent = "deny"
    env = env_for(google.emu)
    sign_in = SignIn(home, env)
    httpx.get(sign_in.authorization_url(google.emu.authorize_url), follow_redirects=True, timeout=30)
    code, _, err = sign_in.finish()
    assert code == 1 and "access_denied" in err
    assert _connections(run, env) == []


def test_signing_in_needs_an_oauth_client(google: GoogleWorld, run: Run) -> None:
    env = {k: v for k, v in env_for(google.emu).items() if "CLIENT" not in k}
    result = run("connect", "google", "--no-browser", env=env, check=False)
    assert result.returncode == 1 and "ALLIANCE_GOOGLE_CLIENT_ID" in result.stderr


def _token_file(tmp_path: Path, google: GoogleWorld, **extra: object) -> Path:
    path = tmp_path / "authorized_user.json"
    data = {
        "type": "authorized_user",
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "refresh_token": google.tokens["refresh_token"],
        "token_uri": "https://oauth2.googleapis.com/token",  # ignored: the operator's setting wins
        **extra,
    }
    path.write_text(json.dumps(data))
    return path


def test_a_token_file_connects_and_a_second_process_reuses_the_refreshed_token(
    google: GoogleWorld, run: Run, tmp_path: Path
) -> None:
    env = env_for(google.emu)
    result = run("connect", "google", "--token-file", str(_token_file(tmp_path, google)), "--name", "practice", env=env)
    assert "connected 'practice'" in result.stdout
    # No access token in the file: the first call refreshed it, and the new token was stored.
    assert [r["path"] for r in google.state.requests()][:2] == ["/token", EVENTS_PATH]

    google.state.clear_request_log()
    google.seed({"summary": "New", **timed(at(5))})
    synced = json.loads(run("sync", "--json", env=env).stdout)
    assert synced[0]["ok"] and synced[0]["created"] == 1
    # A second process read the stored token: no refresh, one incremental request.
    (only,) = google.state.requests()
    assert only["path"] == EVENTS_PATH and "syncToken" in only["query"]


def test_a_revoked_grant_needs_reconnecting_and_reconnecting_keeps_the_connection(
    google: GoogleWorld, run: Run, tmp_path: Path
) -> None:
    env = env_for(google.emu)
    token_file = _token_file(tmp_path, google, token=google.tokens["access_token"])
    run("connect", "google", "--token-file", str(token_file), env=env)
    google.state.revoke_consent()

    result = run("sync", env=env, check=False)

    assert result.returncode == 1 and "alliance connect google" in result.stderr
    (connection,) = _connections(run, env)
    assert connection["health"] == "needs_reconnect"
    # The revoked grant cannot reconnect: the connection keeps what it had.
    again = run("connect", "google", "--token-file", str(token_file), env=env, check=False)
    assert again.returncode == 1 and "nothing was changed" in again.stderr
    # Said as what it is: the grant given was refused (not "run 'alliance connect google' again",
    # which is what was just run).
    assert "google refused the grant given" in again.stderr and "again to reconnect" not in again.stderr
    # A new grant reconnects the same connection: its occurrences (and sessions) stay.
    google.tokens = google.state.issue_tokens(scopes=list(SCOPES))
    fresh = run("connect", "google", "--token-file", str(_token_file(tmp_path, google)), env=env)
    assert "reconnected 'google'" in fresh.stdout and "0 created" in fresh.stdout
    (after,) = _connections(run, env)
    assert (after["id"], after["health"], after["occurrences"]) == (connection["id"], "ok", 4)


def test_a_bad_token_file_is_refused(google: GoogleWorld, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "sa.json"
    path.write_text(json.dumps({"type": "service_account", "client_email": "x@y"}))
    result = run("connect", "google", "--token-file", str(path), env=env_for(google.emu), check=False)
    assert result.returncode == 1 and "not an authorized user" in result.stderr


def test_connections_shows_a_paused_push_channel_with_until_when_and_why(
    google: GoogleWorld, run: Run, tmp_path: Path, home: Path
) -> None:
    env = {**env_for(google.emu), "ALLIANCE_MASTER_KEY": TEST_MASTER_KEY}
    run("connect", "google", "--token-file", str(_token_file(tmp_path, google)), "--name", "practice", env=env)
    # The renewal job (run by `alliance serve` / the worker) meets Google's quotaExceeded.
    settings = settings_for(google.emu, home, "http://127.0.0.1:9")
    opened = open_env(settings)
    google.state.inject_fault("quotaExceeded", path=f"{EVENTS_PATH}/watch")
    try:
        (until,) = maintain_channels(
            opened.store, settings, datetime.now(UTC), build_registry(settings)
        ).paused.values()
    finally:
        opened.store.close()

    table = run("connections", env=env).stdout
    assert f"push paused until {until.astimezone(UTC):%Y-%m-%d %H:%M} UTC" in table
    assert "QuotaExceeded" in table
    (connection,) = _connections(run, env)
    pause = connection["push_pause"]
    assert isinstance(pause, dict) and datetime.fromisoformat(pause["until"]) == until
    assert "QuotaExceeded" in pause["reason"] and pause["refusals"] == 1
