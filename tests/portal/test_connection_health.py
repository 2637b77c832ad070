"""``GET /api/v1/connections/{id}/health``: the sync-health view over the real app (both databases)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select

from alliance.settings import Settings
from core.accounts import create_api_token, create_therapist
from core.mail import MailMessage
from core.store import Store
from core.sync.attention import PURPOSE
from tests.portal.conftest import asgi_client, make_settings
from tests.portal.feeds import Event, feed_server, soon

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # A day between reconciliations: the embedded worker's sweep does not sync during the test.
    return make_settings(tmp_path / "home").model_copy(
        update={"sync_interval_minutes": 24 * 60, "sync_max_failures": 2, "sync_backoff_base_seconds": 60.0}
    )


def _bearer(store: Store, email: str) -> dict[str, str]:
    token = create_api_token(store, create_therapist(store, email), "t").token
    return {"Authorization": f"Bearer {token}"}


def _at(value: str | None) -> datetime:
    assert value is not None
    return datetime.fromisoformat(value)


async def test_health_shows_last_sync_failures_backoff_and_attention(app: FastAPI, store: Store) -> None:
    a = _bearer(store, "a@example.org")
    b = _bearer(store, "b@example.org")
    with feed_server() as feed:
        feed.serve(Event("one@a", soon(1), "Intake"))
        async with asgi_client(app) as client:
            made = await client.post(
                "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "a-cal"}, headers=a
            )
            cid = made.json()["id"]
            never = (await client.get(f"/api/v1/connections/{cid}/health", headers=a)).json()
            assert never["last_sync"] == {"at": None, "ok": None, "error": None}

            assert (await client.post(f"/api/v1/connections/{cid}/sync", headers=a)).status_code == 200
            ok = await client.get(f"/api/v1/connections/{cid}/health", headers=a)
            assert ok.status_code == 200
            body = ok.json()
            assert body["health"] == "ok" and body["last_sync"]["ok"] is True
            assert body["consecutive_failures"] == 0 and body["backoff_until"] is None
            assert body["needs_attention"] is False and body["push"] is None
            last = _at(body["last_sync"]["at"])
            assert last < _at(body["next_reconcile_at"]) <= last + timedelta(days=1)
            assert feed.secret not in ok.text

            feed.status = 503  # the feed server is down for a while
            before = datetime.now(UTC)
            assert (await client.post(f"/api/v1/connections/{cid}/sync", headers=a)).status_code == 502
            body = (await client.get(f"/api/v1/connections/{cid}/health", headers=a)).json()
            assert body["health"] == "error" and body["last_sync"]["ok"] is False
            assert "503" in body["last_sync"]["error"] and body["consecutive_failures"] == 1
            backoff = _at(body["backoff_until"])
            assert before <= backoff <= datetime.now(UTC) + timedelta(seconds=60)  # first ceiling: the base
            assert _at(body["next_sync_at"]) >= backoff
            assert body["needs_attention"] is False

            assert (await client.post(f"/api/v1/connections/{cid}/sync", headers=a)).status_code == 502
            body = (await client.get(f"/api/v1/connections/{cid}/health", headers=a)).json()
            assert body["health"] == "needs_attention" and body["consecutive_failures"] == 2
            assert body["needs_attention"] is True and "2 failed syncs in a row" in body["attention_reason"]
            listed = (await client.get(f"/api/v1/connections/{cid}", headers=a)).json()
            assert listed["health"] == "needs_attention"

            # Another therapist's connection is answered like a missing one.
            assert (await client.get(f"/api/v1/connections/{cid}/health", headers=b)).status_code == 404
            assert (await client.get("/api/v1/connections/999999/health", headers=a)).status_code == 404
    with store.session() as session:
        assert len(list(session.scalars(select(MailMessage.id).where(MailMessage.purpose == PURPOSE)))) == 1
