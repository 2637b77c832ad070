"""Liveness and readiness probes."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from alembic import command

from alliance.app import create_app
from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.store import Store
from core.store.db import alembic_config, make_engine
from tests.conftest import test_keyring
from tests.portal.conftest import asgi_client

pytestmark = pytest.mark.anyio


async def test_healthz_and_readyz(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "migrations": "ok", "worker": "ok"}}


async def test_readyz_is_503_when_the_worker_is_not_alive(store: Store, settings: Settings) -> None:
    worker = EmbeddedWorker(store, settings)  # never started
    async with asgi_client(create_app(settings, store=store, worker=worker)) as client:
        assert (await client.get("/healthz")).status_code == 200  # alive, just not ready
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["worker"] == "not running"
        worker.start()
        assert (await client.get("/readyz")).status_code == 200
        worker.stop()
        assert (await client.get("/readyz")).status_code == 503


async def test_readyz_is_503_when_migrations_are_behind(tmp_path: Path, settings: Settings) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'old.db'}")
    command.upgrade(alembic_config(engine), "0002")  # an older release's schema
    store = Store(engine, keyring=test_keyring())
    worker = EmbeddedWorker(store, settings)
    worker.start()
    try:
        async with asgi_client(create_app(settings, store=store, worker=worker)) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "unavailable",
                "checks": {"database": "ok", "migrations": "pending", "worker": "ok"},
            }
    finally:
        worker.stop()
        store.close()


async def test_readyz_is_503_when_the_database_is_unreachable(tmp_path: Path, settings: Settings) -> None:
    missing_dir = tmp_path / "no such directory"
    store = Store(make_engine(f"sqlite:///{missing_dir / 'x.db'}"), keyring=test_keyring())
    async with asgi_client(create_app(settings, store=store)) as client:
        ready = await client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "unreachable", "migrations": "unknown"}
        assert str(missing_dir) not in ready.text
