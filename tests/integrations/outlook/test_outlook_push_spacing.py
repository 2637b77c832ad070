"""ALLIANCE_PUSH_SYNC_SPACING_MS on the Outlook webhook, on both queues: a notification right after a
sync waits for the spacing; one after a quiet spell syncs at once (as the Google webhook does)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select, text, update

from alliance.app import create_app
from alliance.jobs import build_registry
from alliance.outlook_push import SYNC_JOB, maintain_subscriptions
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.jobs.models import PENDING, QueuedJob
from core.mirror import add_connection, ensure_therapist, list_connections
from core.store import Store
from core.store.models import Connection
from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.integrations.outlook.world import OutlookWorld, at, timed
from tests.webhooks.serve import loopback, serve_on

SPACING = timedelta(seconds=10)  # the most allowed: "at once" and "when spaced" cannot blur


@pytest.fixture
def app_url(store: Store, tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    sock, url = loopback()
    yield url, sock
    sock.close()  # closed already when served (serve_on); a second close is harmless


def _settings(base: str, home: Path, store: Store, outlook: OutlookWorld) -> Settings:
    return Settings(
        home=home,
        # The queue follows the database: procrastinate on PostgreSQL, the embedded table on SQLite.
        database_url=store.engine.url.render_as_string(hide_password=False),
        public_url=base,
        ms_client_id=DEFAULT_CLIENT_ID,
        ms_client_secret=DEFAULT_CLIENT_SECRET,
        ms_authority=outlook.emu.authority,
        graph_api_url=outlook.emu.graph_url,
        ms_ca_bundle=outlook.emu.ca_file,
        timezone="Europe/Madrid",
        push_sync_spacing_ms=int(SPACING.total_seconds() * 1000),
    )


@pytest.fixture
def served(
    store: Store, app_url: tuple[str, socket.socket], tmp_path: Path, outlook: OutlookWorld
) -> Iterator[Settings]:
    base, sock = app_url
    settings = _settings(base, tmp_path, store, outlook)
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            conn.execute(text("TRUNCATE procrastinate_jobs, procrastinate_events RESTART IDENTITY CASCADE"))
    with serve_on(sock, create_app(settings, store=store), lifespan="off"):
        yield settings


def _drop_waiting_syncs(store: Store) -> int:
    """Forget the waiting sync jobs (as if they had run and found nothing new); how many there were."""
    if store.engine.dialect.name == "postgresql":
        sql = "DELETE FROM procrastinate_jobs WHERE status = 'todo' AND task_name = :job"
    else:
        sql = "DELETE FROM queued_jobs WHERE status = :pending AND job = :job"
    with store.engine.begin() as conn:
        return conn.execute(text(sql), {"job": SYNC_JOB, "pending": PENDING}).rowcount


def _waiting_sync_due(store: Store, connection_id: int) -> datetime | None:
    """When the connection's one waiting sync job is due (None: due at once, procrastinate's way)."""
    lock = f"{SYNC_JOB}:{connection_id}"
    if store.engine.dialect.name == "postgresql":
        with store.engine.connect() as conn:
            [(due,)] = conn.execute(
                text("SELECT scheduled_at FROM procrastinate_jobs WHERE status = 'todo' AND queueing_lock = :l"),
                {"l": lock},
            ).all()
        return due  # type: ignore[no-any-return]
    with store.session() as session:
        [job] = session.scalars(
            select(QueuedJob).where(
                QueuedJob.status == PENDING, QueuedJob.job == SYNC_JOB, QueuedJob.queueing_lock == lock
            )
        )
        return job.next_attempt_at


def test_a_notification_right_after_a_sync_waits_for_the_spacing_one_after_a_quiet_spell_does_not(
    outlook: OutlookWorld, store: Store, served: Settings
) -> None:
    settings = served
    outlook.seed({"iCalUId": "first@x", "subject": "First", **timed(at(2))})
    busy = add_connection(store, ensure_therapist(store, "ana@example.org"), "outlook", "outlook", outlook.settings())
    quiet = add_connection(store, ensure_therapist(store, "ben@example.org"), "outlook", "outlook", outlook.settings())
    for connection in list_connections(store):
        assert sync_one(store, settings, connection).ok
    maintain_subscriptions(store, settings, build_registry(settings))
    assert _drop_waiting_syncs(store) == 2  # the one sync each new subscription asks for (nothing new)
    with store.session() as session:  # ben's calendar last synced an hour ago; ana's just now
        session.execute(
            update(Connection).where(Connection.id == quiet).values(last_sync_at=datetime.now(UTC) - timedelta(hours=1))
        )
        busy_synced = session.scalar(select(Connection.last_sync_at).where(Connection.id == busy))
    assert busy_synced is not None
    subs = {s.id: s for s in outlook.state.subscriptions.values()}
    assert len(subs) == 2

    # Graph's POSTs: a change in each calendar, then another (a burst).
    items = [
        {"subscriptionId": s.id, "clientState": s.client_state, "changeType": "updated", "resource": "x"}
        for s in subs.values()
    ]
    for _ in range(2):
        assert httpx.post(f"{settings.public_url}/webhooks/outlook", json={"value": items}).status_code == 202
    answered = datetime.now(UTC)

    # Ana's sync is due one spacing after her last sync, and the burst shares it.
    assert _waiting_sync_due(store, busy) == busy_synced + SPACING
    # Ben's is due at once (already due when the answer came).
    due = _waiting_sync_due(store, quiet)
    assert due is None or due <= answered
