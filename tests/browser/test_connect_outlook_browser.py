"""Connecting Outlook in Chromium: a therapist signs in to Alliance, presses "Continue to Microsoft", the
emulator's HTTPS sign-in (auto-consent) sends the browser back, and the calendar is connected and synced.
The page passes axe-core. Chromium is told to accept the emulator's per-run test CA (its certificate is
not in the system store); MSAL on the server side still verifies it against that CA."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from alliance.app import create_app
from core.accounts import create_therapist, set_password
from core.mirror import list_connections, list_occurrences
from core.store import Store
from core.store.db import make_engine
from sandbox.outlook import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    OutlookState,
    RunningEmulator,
    run_outlook_emulator,
)
from tests.browser.conftest import LiveServer, artifacts_dir
from tests.browser.test_client_browser import _axe
from tests.conftest import test_keyring
from tests.integrations.outlook.world import at, timed
from tests.links.world import make_settings
from tests.portal.conftest import PASSWORD
from tests.webhooks.serve import loopback, serve_on


@pytest.fixture(scope="module")
def emulator() -> Iterator[RunningEmulator]:
    with run_outlook_emulator(OutlookState(seed=3)) as emu:
        emu.state.seed_event({"subject": "Session", **timed(at(2))})
        yield emu


@pytest.fixture
def outlook_server(tmp_path: Path, sqlite_template: Path, emulator: RunningEmulator) -> Iterator[LiveServer]:
    path = tmp_path / "alliance.db"
    shutil.copy(sqlite_template, path)
    store = Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring())
    sock, base_url = loopback()
    settings = make_settings(
        tmp_path / "home",
        base_url=base_url,
        ms_authority=emulator.authority,
        graph_api_url=emulator.graph_url,
        ms_client_id=DEFAULT_CLIENT_ID,
        ms_client_secret=DEFAULT_CLIENT_SECRET,
        ms_ca_bundle=emulator.ca_file,
    )
    try:
        with serve_on(sock, create_app(settings, store=store)):
            yield LiveServer(base_url, store)
    finally:
        store.close()


def test_a_therapist_connects_outlook_in_the_browser(outlook_server: LiveServer, chromium: Any) -> None:
    therapist = create_therapist(outlook_server.store, "ana@example.org", display_name="Ana")
    set_password(outlook_server.store, therapist, PASSWORD)
    context = chromium.new_context(ignore_https_errors=True)  # the emulator's test CA only
    page = context.new_page()
    try:
        page.goto(f"{outlook_server.base_url}/login")
        page.fill("input[name=email]", "ana@example.org")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        page.wait_for_url(f"{outlook_server.base_url}/")
        page.goto(f"{outlook_server.base_url}/connect/outlook")
        assert page.locator("h1").inner_text() == "Connect your Outlook calendar"
        page.screenshot(path=str(artifacts_dir() / "connect-outlook.png"), full_page=True)
        _axe(page, "connect outlook")

        page.click("text=Continue to Microsoft")  # to Microsoft's sign-in, and straight back (auto-consent)
        try:
            page.wait_for_url(f"{outlook_server.base_url}/", timeout=30_000)
        except Exception:
            raise AssertionError(f"stopped at {page.url}: {page.locator('main').inner_text()[:600]}") from None
    finally:
        context.close()

    (connection,) = list_connections(outlook_server.store, therapist)
    assert (connection.provider, connection.health) == ("outlook", "ok")
    assert [o.title for o in list_occurrences(outlook_server.store, therapist_id=therapist)] == ["Session"]
