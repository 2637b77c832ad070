"""A real uvicorn on a loopback port serving the real app, and Debian's Chromium driven by Playwright.

Chromium is the distribution's (``apt-get install -y chromium``; ``.ci/run`` installs it), never a
download by Playwright. Without ``/usr/bin/chromium`` these tests skip locally and fail under CI.
Screenshots go to ``.ci/artifacts/browser/`` (or ``$ALLIANCE_ARTIFACTS_DIR``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from alliance.app import create_app
from core.store import Store
from core.store.db import make_engine
from tests.conftest import test_keyring
from tests.links.world import make_settings
from tests.webhooks.serve import loopback, serve_on

CHROMIUM = os.environ.get("ALLIANCE_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # The device check: grant camera/microphone without a prompt, and feed a test pattern and tone.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]
REPO = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    path = Path(os.environ.get("ALLIANCE_ARTIFACTS_DIR", REPO / ".ci" / "artifacts")) / "browser"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class LiveServer:
    base_url: str
    store: Store


@pytest.fixture
def live_server(tmp_path: Path, sqlite_template: Path) -> Iterator[LiveServer]:
    """The real app under uvicorn on 127.0.0.1 (a free port), on a fresh SQLite store."""
    path = tmp_path / "alliance.db"
    shutil.copy(sqlite_template, path)
    store = Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring())
    sock, base_url = loopback()
    settings = make_settings(tmp_path / "home", base_url=base_url)
    try:
        with serve_on(sock, create_app(settings, store=store), timeout_graceful_shutdown=2):
            yield LiveServer(base_url, store)
    finally:
        store.close()


@pytest.fixture(scope="module")
def chromium() -> Iterator[object]:
    """One headless Chromium per test module (the system binary).

    Not per session: Playwright's sync API keeps an event loop running in this thread while it is
    open, and the async tests of later modules (anyio) could not start their own.
    """
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing under CI: .ci/run must 'apt-get install -y chromium'")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
