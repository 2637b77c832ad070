"""``/connect/outlook`` end to end: a signed-in therapist's browser (an httpx client keeping cookies)
goes through the app, MSAL and the emulator's real HTTPS authorize and token endpoints (code flow with
PKCE and a nonce)."""

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
from alliance.syncing import sync_one
from core.accounts import create_therapist, set_password
from core.mirror import list_connections, list_occurrences
from core.store import Store
from integrations.outlook.transport import identity_session
from portal.connect_outlook import FLOW_COOKIE
from sandbox.outlook import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    OutlookState,
    RunningEmulator,
    run_outlook_emulator,
)
from tests.integrations.outlook.world import at, timed
from tests.portal.conftest import PASSWORD, asgi_client, csrf_from, make_settings, sign_in

BASE = "http://127.0.0.1:8000"
CALLBACK = f"{BASE}/connect/outlook/callback"


@pytest.fixture(scope="module")
def outlook_emulator() -> Iterator[RunningEmulator]:
    with run_outlook_emulator(OutlookState(seed=7)) as emu:
        yield emu


@pytest.fixture
def emu(outlook_emulator: RunningEmulator) -> RunningEmulator:
    outlook_emulator.state.reset()
    outlook_emulator.state.seed_event({"subject": "Session", **timed(at(3))})
    return outlook_emulator


@pytest.fixture
def outlook_settings(tmp_path: Path, emu: RunningEmulator) -> Settings:
    return make_settings(tmp_path / "home").model_copy(
        update={
            "base_url": BASE,
            "ms_authority": emu.authority,
            "graph_api_url": emu.graph_url,
            "ms_client_id": DEFAULT_CLIENT_ID,
            "ms_client_secret": SecretStr(DEFAULT_CLIENT_SECRET),
            "ms_ca_bundle": emu.ca_file,
        }
    )


@pytest.fixture
def outlook_app(store: Store, outlook_settings: Settings) -> FastAPI:
    return create_app(outlook_settings, store=store)


@pytest.fixture
def ana(therapist: int) -> int:
    """Ana, who signs in (conftest's ``therapist``)."""
    return therapist


@pytest.fixture
async def browser(outlook_app: FastAPI, ana: int) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(outlook_app, base_url=BASE) as client:
        assert (await sign_in(client)).status_code == 303
        yield client


async def _to_microsoft(browser: httpx.AsyncClient) -> str:
    """Open the page, press the button; the address the app sends the browser to."""
    page = await browser.get("/connect/outlook")
    assert page.status_code == 200 and "Continue to Microsoft" in page.text
    started = await browser.post("/connect/outlook", data={"csrf_token": csrf_from(page.text)})
    assert started.status_code == 303
    return started.headers["location"]


def _microsoft_answers(emu: RunningEmulator, authorize_url: str) -> str:
    """The emulator's sign-in page (auto-consent over HTTPS): where Microsoft sends the browser back."""
    answer = identity_session(str(emu.ca_file)).get(authorize_url, allow_redirects=False)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


def _path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


@pytest.mark.anyio
async def test_a_therapist_connects_outlook_from_the_browser(
    browser: httpx.AsyncClient, store: Store, ana: int, emu: RunningEmulator
) -> None:
    # The form may lead to Microsoft's sign-in (CSP form-action also governs the POST's redirect).
    page = await browser.get("/connect/outlook")
    origin = "/".join(emu.authority.split("/")[:3])
    assert f"form-action 'self' {origin};" in page.headers["content-security-policy"]

    authorize = await _to_microsoft(browser)
    query = parse_qs(urlsplit(authorize).query)
    assert authorize.startswith(emu.authority)
    assert query["redirect_uri"] == [CALLBACK] and query["client_id"] == [DEFAULT_CLIENT_ID]
    assert query["code_challenge_method"] == ["S256"] and len(query["code_challenge"][0]) == 43
    assert query["nonce"] and query["state"]
    assert "Calendars.ReadWrite" in query["scope"][0] and "offline_access" in query["scope"][0]
    # The flow (PKCE verifier, nonce) travels sealed: neither is readable in the cookie.
    sealed = browser.cookies.get(FLOW_COOKIE, path="/connect/outlook/callback")
    assert sealed and query["state"][0] not in sealed

    callback = _microsoft_answers(emu, authorize)
    assert callback.startswith(f"{CALLBACK}?")
    done = await browser.get(_path(callback))
    assert done.status_code == 303 and done.headers["location"] == "/"

    (connection,) = list_connections(store, ana)
    assert (connection.provider, connection.name, connection.health) == ("outlook", "outlook", "ok")
    assert connection.settings["client_id"] == DEFAULT_CLIENT_ID and connection.settings["home_account_id"]
    assert [o.title for o in list_occurrences(store, therapist_id=ana)] == ["Session"]
    with store.engine.connect() as conn:
        stored = b"".join(bytes(r[0]) for r in conn.execute(text("SELECT credentials FROM connections")))
    assert b"RefreshToken" not in stored and b"1.AS" not in stored  # the MSAL cache sealed through the keyring

    # The answer is used once: replaying it finds no sign-in in progress.
    replay = await browser.get(_path(callback))
    assert replay.status_code == 400 and "start again" in replay.text

    # Connecting again (a new sign-in) reconnects the same connection with a new cache, keeping its mirror.
    again = await browser.get(_path(_microsoft_answers(emu, await _to_microsoft(browser))))
    assert again.status_code == 303
    (reconnected,) = list_connections(store, ana)
    assert reconnected.id == connection.id
    assert reconnected.settings["token_cache"] != connection.settings["token_cache"]


@pytest.mark.anyio
async def test_the_answer_is_bound_to_the_session_that_started_the_flow(
    browser: httpx.AsyncClient, outlook_app: FastAPI, store: Store, ana: int, emu: RunningEmulator
) -> None:
    callback = _microsoft_answers(emu, await _to_microsoft(browser))
    sealed = browser.cookies.get(FLOW_COOKIE, path="/connect/outlook/callback")
    other = create_therapist(store, "ben@example.org", display_name="Ben")
    set_password(store, other, PASSWORD)
    async with asgi_client(outlook_app, base_url=BASE) as ben:
        await sign_in(ben, email="ben@example.org")
        # Even with Ana's sealed flow copied over, Ben's session cannot finish her sign-in.
        ben.cookies.set(FLOW_COOKIE, sealed or "", path="/connect/outlook/callback")
        stolen = await ben.get(_path(callback))
    assert stolen.status_code == 400 and "start again" in stolen.text
    assert list_connections(store, other) == [] and list_connections(store, ana) == []

    # A tampered state is refused by MSAL's own check, and an answer without a session is sent to sign in.
    parts = urlsplit(callback)
    query = parse_qs(parts.query)
    tampered = f"{parts.path}?code={query['code'][0]}&state={query['state'][0][:-2]}xx"
    answer = await browser.get(tampered)
    assert answer.status_code == 400 and "does not belong to this request" in answer.text
    async with asgi_client(outlook_app, base_url=BASE) as anonymous:
        assert (await anonymous.get(_path(callback))).status_code in (303, 307)
    assert list_connections(store, ana) == []


@pytest.mark.anyio
async def test_a_refused_consent_adds_nothing_and_says_what_to_do(
    browser: httpx.AsyncClient, store: Store, ana: int, emu: RunningEmulator
) -> None:
    emu.state.settings.consent = "deny"
    answer = await browser.get(_path(_microsoft_answers(emu, await _to_microsoft(browser))))
    assert answer.status_code == 400 and "not granted" in answer.text and "Allow calendar access" in answer.text
    assert list_connections(store, ana) == []


@pytest.mark.anyio
async def test_revoked_consent_shows_needs_reconnect_and_a_new_sign_in_fixes_it(
    browser: httpx.AsyncClient, store: Store, ana: int, emu: RunningEmulator, outlook_settings: Settings
) -> None:
    assert (await browser.get(_path(_microsoft_answers(emu, await _to_microsoft(browser))))).status_code == 303
    emu.state.revoke_consent()
    emu.state.expire_access_tokens()

    (connection,) = list_connections(store, ana)
    assert not sync_one(store, outlook_settings, connection).ok
    (connection,) = list_connections(store, ana)
    assert connection.health == "needs_reconnect" and "connect outlook" in (connection.last_error or "")

    assert (await browser.get(_path(_microsoft_answers(emu, await _to_microsoft(browser))))).status_code == 303
    (connection,) = list_connections(store, ana)
    assert connection.health == "ok"


@pytest.mark.anyio
async def test_the_button_needs_the_csrf_token(browser: httpx.AsyncClient) -> None:
    assert (await browser.post("/connect/outlook", data={"csrf_token": "forged"})).status_code == 403


@pytest.mark.anyio
async def test_without_a_microsoft_app_the_page_says_what_to_set(
    browser: httpx.AsyncClient, outlook_app: FastAPI
) -> None:
    outlook_app.state.settings = outlook_app.state.settings.model_copy(update={"ms_client_id": None})
    page = await browser.get("/connect/outlook")
    started = await browser.post("/connect/outlook", data={"csrf_token": csrf_from(page.text)})
    assert started.status_code == 503 and "ALLIANCE_MS_CLIENT_ID" in started.text
