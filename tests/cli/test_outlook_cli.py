"""`alliance connect outlook`: MSAL's code flow end to end against the emulator, refresh-token files, failures."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from sandbox.outlook import DEFAULT_CLIENT_ID, OutlookState, RunningEmulator, run_outlook_emulator
from tests.cli.helpers import Run
from tests.integrations.outlook.world import MADRID, OutlookWorld, at, env_for, timed, weekly


@pytest.fixture(scope="module")
def outlook_emulator() -> Iterator[RunningEmulator]:
    with run_outlook_emulator(OutlookState(seed=23)) as emu:
        yield emu


@pytest.fixture
def outlook(outlook_emulator: RunningEmulator) -> OutlookWorld:
    world = OutlookWorld(outlook_emulator)
    world.reset()
    world.seed({"subject": "Session", **timed(at(2))})
    world.seed({"subject": "Weekly", **weekly(at(3, 17), 3)})
    return world


def _browser(emu: RunningEmulator) -> httpx.Client:
    return httpx.Client(verify=ssl.create_default_context(cafile=str(emu.ca_file)), follow_redirects=True, timeout=30)


class SignIn:
    """`alliance connect outlook` running in its own process, waiting for the browser."""

    def __init__(self, home: Path, env: dict[str, str], *args: str) -> None:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        full_env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": MADRID, "COLUMNS": "200", **env})
        self.process = subprocess.Popen(
            [sys.executable, "-m", "alliance", "connect", "outlook", "--no-browser", "--timeout", "60", *args],
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


def test_the_code_flow_connects_and_runs_the_first_sync(outlook: OutlookWorld, run: Run, home: Path) -> None:
    env = env_for(outlook.emu)
    sign_in = SignIn(home, env)

    url = sign_in.authorization_url(outlook.emu.authority)
    query = parse_qs(urlsplit(url).query)
    assert query["code_challenge_method"] == ["S256"] and query["client_id"] == [DEFAULT_CLIENT_ID]
    assert query["redirect_uri"][0].startswith("http://127.0.0.1:") and query["state"][0] and query["nonce"][0]
    assert set(query["scope"][0].split()) >= {"Calendars.ReadWrite", "offline_access", "openid"}
    # The browser: the emulator consents and redirects to the one-shot listener.
    with _browser(outlook.emu) as browser:
        page = browser.get(url)
    assert page.status_code == 200 and "close this tab" in page.text

    code, out, err = sign_in.finish()
    assert code == 0, err
    assert "connected 'outlook'" in out and "4 created" in out
    (connection,) = _connections(run, env)
    assert (connection["provider"], connection["health"], connection["occurrences"]) == ("outlook", "ok", 4)
    assert "0.AS" not in err  # the authorization code is never printed or logged
    events = json.loads(run("events", "--json", "--to", at(30).date().isoformat(), env=env).stdout)
    assert sorted(e["title"] for e in events) == ["Session", "Weekly", "Weekly", "Weekly"]
    # The token cache is stored encrypted: no refresh token in the database file.
    (database,) = home.glob("alliance.db")
    refresh_tokens = list(outlook.state.refresh_tokens)
    assert refresh_tokens and not any(t.encode() in database.read_bytes() for t in refresh_tokens)


def test_a_forged_redirect_is_refused_and_adds_nothing(outlook: OutlookWorld, run: Run, home: Path) -> None:
    env = env_for(outlook.emu)
    redeemed = len(outlook.state.requests("/oauth2/v2.0/token"))  # the fixture's own sign-in
    sign_in = SignIn(home, env)
    url = sign_in.authorization_url(outlook.emu.authority)
    listener = parse_qs(urlsplit(url).query)["redirect_uri"][0]

    httpx.get(listener, params={"code": "0.ASforged", "state": "not-the-state"}, timeout=30)

    code, _, err = sign_in.finish()
    assert code == 1 and "state mismatch" in err and "nothing was added" in err
    assert _connections(run, env) == []
    assert len(outlook.state.requests("/oauth2/v2.0/token")) == redeemed  # the forged code was never redeemed


def test_a_denied_consent_adds_nothing(outlook: OutlookWorld, run: Run, home: Path) -> None:
    outlook.state.settings.consent = "deny"
    env = env_for(outlook.emu)
    sign_in = SignIn(home, env)
    with _browser(outlook.emu) as browser:
        browser.get(sign_in.authorization_url(outlook.emu.authority))
    code, _, err = sign_in.finish()
    assert code == 1 and "access_denied" in err
    assert _connections(run, env) == []


def test_signing_in_needs_an_app_registration(outlook: OutlookWorld, run: Run) -> None:
    env = {k: v for k, v in env_for(outlook.emu).items() if "CLIENT" not in k}
    result = run("connect", "outlook", "--no-browser", env=env, check=False)
    assert result.returncode == 1 and "ALLIANCE_MS_CLIENT_ID" in result.stderr


def test_an_http_authority_is_refused_at_start(outlook: OutlookWorld, run: Run) -> None:
    env = env_for(outlook.emu) | {"ALLIANCE_MS_AUTHORITY": outlook.emu.authority.replace("https://", "http://")}
    result = run("connect", "outlook", "--no-browser", env=env, check=False)
    assert result.returncode != 0 and "ms_authority" in result.stderr.lower()


def _refresh_token_file(tmp_path: Path, outlook: OutlookWorld) -> Path:
    path = tmp_path / "refresh-token"
    path.write_text(outlook.state.issue_tokens()["refresh_token"] + "\n")
    return path


def test_a_refresh_token_file_connects_and_a_second_process_reuses_the_cache(
    outlook: OutlookWorld, run: Run, tmp_path: Path
) -> None:
    env = env_for(outlook.emu)
    result = run("connect", "outlook", "--refresh-token-file", str(_refresh_token_file(tmp_path, outlook)), env=env)
    assert "connected 'outlook'" in result.stdout and "4 created" in result.stdout
    tokens_before = len(outlook.state.requests("/oauth2/v2.0/token"))
    graph_before = len(outlook.state.requests("/v1.0/"))

    outlook.seed({"subject": "New", **timed(at(5))})
    synced = json.loads(run("sync", "--json", env=env).stdout)

    assert synced[0]["ok"] and synced[0]["created"] == 1
    # A second process used the stored cache's access token (no refresh) and one delta request.
    assert len(outlook.state.requests("/oauth2/v2.0/token")) == tokens_before
    assert len(outlook.state.requests("/v1.0/")) - graph_before == 1


def test_revoked_consent_needs_reconnecting_and_reconnecting_keeps_the_connection(
    outlook: OutlookWorld, run: Run, tmp_path: Path
) -> None:
    env = env_for(outlook.emu)
    run("connect", "outlook", "--refresh-token-file", str(_refresh_token_file(tmp_path, outlook)), env=env)
    outlook.state.revoke_consent()

    result = run("sync", env=env, check=False)

    assert result.returncode == 1 and "alliance connect outlook" in result.stderr
    (connection,) = _connections(run, env)
    assert connection["health"] == "needs_reconnect"
    # A new grant reconnects the same connection: its occurrences (and sessions) stay.
    fresh = run("connect", "outlook", "--refresh-token-file", str(_refresh_token_file(tmp_path, outlook)), env=env)
    assert "reconnected 'outlook'" in fresh.stdout and "0 created" in fresh.stdout
    (after,) = _connections(run, env)
    assert (after["id"], after["health"], after["occurrences"]) == (connection["id"], "ok", 4)


def test_a_bad_refresh_token_file_is_refused(outlook: OutlookWorld, run: Run, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("two words\n")
    result = run("connect", "outlook", "--refresh-token-file", str(path), env=env_for(outlook.emu), check=False)
    assert result.returncode == 1 and "one refresh token" in result.stderr
    path.write_text("1.ASnot-a-real-token")
    result = run("connect", "outlook", "--refresh-token-file", str(path), env=env_for(outlook.emu), check=False)
    assert result.returncode == 1 and "invalid_grant" in result.stderr and "nothing was added" in result.stderr
