"""``alliance therapists`` and ``alliance tokens`` as a user runs them, checked against the real web app."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from alliance.app import create_app
from alliance.cli import app as cli_app
from alliance.settings import Settings
from core.crypto import generate_key_text

Run = Callable[..., subprocess.CompletedProcess[str]]
PASSWORD = "a long enough passphrase"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    return {
        "ALLIANCE_HOME": str(tmp_path / "home"),
        "ALLIANCE_MASTER_KEY": generate_key_text(),
        "ALLIANCE_TIMEZONE": "Europe/Madrid",
        "ALLIANCE_BASE_URL": "https://alliance.example.test/",
        "COLUMNS": "200",
    }


@pytest.fixture
def run(env: dict[str, str]) -> Run:
    def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
        full_env.update(env)
        result = subprocess.run(
            [sys.executable, "-m", "alliance", *args], capture_output=True, text=True, env=full_env, timeout=120
        )
        if check and result.returncode != 0:
            raise AssertionError(f"alliance {' '.join(args)} failed ({result.returncode}): {result.stderr}")
        return result

    return _run


def _web_client(env: dict[str, str]) -> httpx.AsyncClient:
    """The real app on the database the CLI wrote (the app opens and migrates it itself).

    Verified tokens are not remembered (ALLIANCE_API_TOKEN_CACHE_SECONDS=0), so a revocation from
    the CLI shows at once; tests/portal/test_api_tokens.py covers the default window.
    """
    settings = Settings(
        home=Path(env["ALLIANCE_HOME"]),
        master_key=env["ALLIANCE_MASTER_KEY"],  # type: ignore[arg-type]
        timezone="UTC",
        api_token_cache_seconds=0,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://testserver")


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match
    return match.group(1)


@pytest.mark.anyio
async def test_therapists_add_prints_a_link_that_works_once(run: Run, env: dict[str, str]) -> None:
    added = run("therapists", "add", "Nora@Example.org", "--name", "Nora")
    links = re.findall(r"https://alliance\.example\.test/setup-password/([A-Za-z0-9_-]+)", added.stdout)
    assert len(links) == 1, added.stdout
    token = links[0]
    assert len(token) >= 22  # >= 128 bits in url-safe base64

    listed = run("therapists", "list").stdout
    assert "nora@example.org" in listed and "Nora" in listed and "not set" in listed and "Europe/Madrid" in listed

    async with _web_client(env) as web:
        form = await web.get(f"/setup-password/{token}")
        assert form.status_code == 200
        done = await web.post(
            f"/setup-password/{token}", data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": _csrf(form.text)}
        )
        assert done.status_code == 303
        assert (await web.get(f"/setup-password/{token}")).status_code == 404  # used up
        login_form = await web.get("/login")
        login = await web.post(
            "/login", data={"email": "nora@example.org", "password": PASSWORD, "csrf_token": _csrf(login_form.text)}
        )
        assert login.status_code == 303 and "alliance_session" in web.cookies

    assert " set" in run("therapists", "list").stdout
    duplicate = run("therapists", "add", "nora@example.org", check=False)
    assert duplicate.returncode == 1 and duplicate.stderr.strip().startswith("error: a therapist with this e-mail")
    relink = run("therapists", "link", "nora@example.org").stdout
    assert "/setup-password/" in relink and token not in relink
    assert run("therapists", "add", "not-an-address", check=False).returncode == 1
    bad_zone = run("therapists", "add", "zed@example.org", "--timezone", "Mars/Olympus", check=False)
    assert bad_zone.returncode == 1 and "unknown IANA time zone" in bad_zone.stderr


@pytest.mark.anyio
async def test_tokens_create_list_revoke(run: Run, env: dict[str, str]) -> None:
    run("therapists", "add", "tom@example.org")
    created = run("tokens", "create", "--therapist", "tom@example.org", "--name", "backup script").stdout
    token = re.search(r"alliance_[A-Za-z0-9_-]{40,}", created)
    assert token, created
    token_id = re.search(r"token (\d+) created", created)
    assert token_id

    listed = run("tokens", "list").stdout
    assert token.group(0) not in listed  # the secret is shown once only
    assert token.group(0)[:17] in listed and "backup script" in listed and "active" in listed

    headers = {"Authorization": f"Bearer {token.group(0)}"}
    async with _web_client(env) as web:
        assert (await web.get("/api/v1/me", headers=headers)).json()["email"] == "tom@example.org"
        run("tokens", "revoke", token_id.group(1))
        assert (await web.get("/api/v1/me", headers=headers)).status_code == 401
    assert "revoked" in run("tokens", "list").stdout

    missing = run("tokens", "revoke", "999", check=False)
    assert missing.returncode == 1 and "no API token with id 999" in missing.stderr
    unknown = run("tokens", "create", "--therapist", "nobody@example.org", check=False)
    assert unknown.returncode == 1 and "no therapist" in unknown.stderr


def test_therapists_add_with_an_interactive_password(env: dict[str, str]) -> None:
    runner = CliRunner()
    mismatch = runner.invoke(
        cli_app, ["therapists", "add", "ida@example.org", "--password"], input=f"{PASSWORD}\nother thing!!\n", env=env
    )
    assert mismatch.exit_code != 0  # confirmation differs: typer asks again, input runs out, abort
    result = runner.invoke(
        cli_app, ["therapists", "add", "eva@example.org", "--password"], input=f"{PASSWORD}\n{PASSWORD}\n", env=env
    )
    assert result.exit_code == 0, result.output
    assert PASSWORD not in result.output  # hidden input is not echoed
    assert "created with a password" in result.output and "setup-password" not in result.output
