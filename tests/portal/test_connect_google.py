"""``/connect/google`` end to end: a signed-in therapist's browser (an httpx client keeping cookies)
goes through the app and the emulator's real authorize and token endpoints (code flow with PKCE)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from sqlalchemy import text

from alliance.app import create_app
from alliance.settings import Settings
from core.accounts import create_therapist, set_password
from core.mirror import list_connections, list_occurrences
from core.store import Store
from integrations.google.settings import SCOPES
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GoogleState, RunningEmulator, run_google_emulator
from tests.portal.conftest import PASSWORD, asgi_client, csrf_from, make_settings, sign_in

BASE = "http://127.0.0.1:8000"


@pytest.fixture(scope="module")
def google_emulator() -> Iterator[RunningEmulator]:
    with run_google_emulator(GoogleState(time_zone="Europe/Madrid", seed=5)) as emu:
        yield emu


@pytest.fixture
def emu(google_emulator: RunningEmulator) -> RunningEmulator:
    google_emulator.state.reset()
    google_emulator.state.settings.require_pkce = True
    google_emulator.state.settings.consent = "approve"
    start = {"dateTime": "2030-03-04T10:00:00", "timeZone": "Europe/Madrid"}
    end = {"dateTime": "2030-03-04T10:50:00", "timeZone": "Europe/Madrid"}
    google_emulator.state.seed_event("primary", {"summary": "Session", "start": start, "end": end})
    return google_emulator


@pytest.fixture
def google_settings(tmp_path: Path, emu: RunningEmulator) -> Settings:
    return make_settings(tmp_path / "home").model_copy(
        update={
            "base_url": BASE,
            "window_future_days": 3650,
            "google_api_url": emu.api_endpoint,
            "google_auth_url": emu.authorize_url,
            "google_token_url": emu.token_uri,
            "google_client_id": DEFAULT_CLIENT_ID,
            "google_client_secret": SecretStr(DEFAULT_CLIENT_SECRET),
        }
    )


@pytest.fixture
def google_app(store: Store, google_settings: Settings) -> FastAPI:
    return create_app(google_settings, store=store)


@pytest.fixture
def ana(therapist: int) -> int:
    """Ana, who signs in (conftest's ``therapist``)."""
    return therapist


@pytest.fixture
async def browser(google_app: FastAPI, ana: int) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(google_app, base_url=BASE) as client:
        assert (await sign_in(client)).status_code == 303
        yield client


async def _to_google(browser: httpx.AsyncClient) -> str:
    """Open the page, press the button; the address the app sends the browser to."""
    page = await browser.get("/connect/google")
    assert page.status_code == 200 and "Continue to Google" in page.text
    started = await browser.post("/connect/google", data={"csrf_token": csrf_from(page.text)})
    assert started.status_code == 303
    return started.headers["location"]


def _google_answers(authorize_url: str) -> str:
    """The emulator's consent screen (auto-consent): where Google sends the browser back."""
    with httpx.Client(trust_env=False) as http:
        answer = http.get(authorize_url)
    assert answer.status_code == 302, answer.text
    return answer.headers["location"]


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.anyio
async def test_a_therapist_connects_google_from_the_browser(
    browser: httpx.AsyncClient, store: Store, ana: int, emu: RunningEmulator
) -> None:
    authorize = await _to_google(browser)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(emu.authorize_url)
    assert query["redirect_uri"] == [f"{BASE}/connect/google/callback"]
    assert query["access_type"] == ["offline"] and query["prompt"] == ["consent"]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["scope"] == [" ".join(SCOPES)]

    callback = _google_answers(authorize)
    assert callback.startswith(f"{BASE}/connect/google/callback?")
    done = await browser.get(_path(callback))
    assert done.status_code == 303 and done.headers["location"] == "/"

    (connection,) = list_connections(store, ana)
    assert (connection.provider, connection.name, connection.health) == ("google", "google", "ok")
    assert connection.settings["refresh_token"] and connection.settings["client_id"] == DEFAULT_CLIENT_ID
    assert [o.title for o in list_occurrences(store, therapist_id=ana)] == ["Session"]
    with store.engine.connect() as conn:
        stored = b"".join(bytes(r[0]) for r in conn.execute(text("SELECT credentials FROM connections")))
    assert connection.settings["refresh_token"].encode() not in stored  # encrypted through the keyring
    assert "google" in (await browser.get("/")).text

    # Connecting again (a new consent) reconnects the same connection, keeping its mirror.
    again = await browser.get(_path(_google_answers(await _to_google(browser))))
    assert again.status_code == 303
    (reconnected,) = list_connections(store, ana)
    assert (
        reconnected.id == connection.id
        and reconnected.settings["refresh_token"] != connection.settings["refresh_token"]
    )


@pytest.mark.anyio
async def test_the_answer_is_bound_to_the_session_that_started_the_flow(
    browser: httpx.AsyncClient, google_app: FastAPI, store: Store, ana: int
) -> None:
    callback = _google_answers(await _to_google(browser))
    other = create_therapist(store, "ben@example.org", display_name="Ben")
    set_password(store, other, PASSWORD)
    async with asgi_client(google_app, base_url=BASE) as ben:
        await sign_in(ben, email="ben@example.org")
        stolen = await ben.get(_path(callback))
    assert stolen.status_code == 400 and "not for this session" in stolen.text
    assert list_connections(store, other) == [] and list_connections(store, ana) == []

    # A tampered state is refused as well, and so is an answer without a session (sign in first).
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    tampered = f"{parts.path}?code={query['code'][0]}&state={query['state'][0][:-2]}xx"
    assert (await browser.get(tampered)).status_code == 400
    async with asgi_client(google_app, base_url=BASE) as anonymous:
        assert (await anonymous.get(_path(callback))).status_code in (303, 307)
    assert list_connections(store, ana) == []


@pytest.mark.anyio
async def test_a_refused_consent_adds_nothing_and_says_why(
    browser: httpx.AsyncClient, store: Store, ana: int, emu: RunningEmulator
) -> None:
    emu.state.settings.consent = "deny"
    answer = await browser.get(_path(_google_answers(await _to_google(browser))))
    assert answer.status_code == 400 and "not granted" in answer.text
    assert list_connections(store, ana) == []


@pytest.mark.anyio
async def test_the_button_needs_the_csrf_token(browser: httpx.AsyncClient) -> None:
    assert (await browser.post("/connect/google", data={"csrf_token": "forged"})).status_code == 403
