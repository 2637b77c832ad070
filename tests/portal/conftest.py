"""Fixtures for the web app: the real app on the ``store`` fixture (both databases), over ASGI."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from alliance.app import create_app
from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.accounts import create_therapist, set_password
from core.store import Store
from tests.conftest import TEST_MASTER_KEY

PASSWORD = "correct horse battery staple"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_settings(home: Path, env: str = "development", *, allow_private_feeds: bool = True) -> Settings:
    # The tests' feed servers listen on loopback, which feeds added on the web may not use by
    # default (tests/integrations/ics/test_public_only.py covers that default).
    return Settings(
        home=home,
        master_key=TEST_MASTER_KEY,
        env=env,  # type: ignore[arg-type]
        timezone="UTC",
        allow_private_feeds=allow_private_feeds,
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "home")


@pytest.fixture
def worker(store: Store, settings: Settings) -> Iterator[EmbeddedWorker]:
    w = EmbeddedWorker(store, settings)
    w.start()
    yield w
    w.stop()


@pytest.fixture
def app(store: Store, settings: Settings, worker: EmbeddedWorker) -> FastAPI:
    return create_app(settings, store=store, worker=worker)


def asgi_client(app: FastAPI, base_url: str = "http://testserver", address: str = "127.0.0.1") -> httpx.AsyncClient:
    # raise_app_exceptions=False: a test sees the 500 a real client would, not the traceback.
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=base_url)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as c:
        yield c


@pytest.fixture
def therapist(store: Store) -> int:
    """A therapist with the password ``PASSWORD``."""
    therapist_id = create_therapist(store, "ana@example.org", display_name="Ana")
    set_password(store, therapist_id, PASSWORD)
    return therapist_id


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


async def sign_in(
    client: httpx.AsyncClient, email: str = "ana@example.org", password: str = PASSWORD
) -> httpx.Response:
    form = await client.get("/login")
    return await client.post("/login", data={"email": email, "password": password, "csrf_token": csrf_from(form.text)})
