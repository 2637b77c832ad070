"""The Outlook sync job backs off like the Google one (issue 9, item 3): a throttled sync records
``backoff_until`` from Graph's Retry-After and re-queues itself for then, not through job retries;
a notification meanwhile does not call Graph before the backoff ends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select, update

from alliance.jobs import build_registry
from alliance.outlook_push import SYNC_JOB, request_sync
from alliance.settings import Settings
from core.jobs.models import PENDING, QueuedJob
from core.jobs.runner import InProcessRunner
from core.mirror import add_connection, ensure_therapist, list_connections
from core.store import Store
from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.integrations.outlook.world import OutlookWorld, at, timed


def _settings(outlook: OutlookWorld, home: Path) -> Settings:
    return Settings(
        home=home,
        ms_client_id=DEFAULT_CLIENT_ID,
        ms_client_secret=DEFAULT_CLIENT_SECRET,
        ms_authority=outlook.emu.authority,
        graph_api_url=outlook.emu.graph_url,
        ms_ca_bundle=outlook.emu.ca_file,
        timezone="Europe/Madrid",
        sync_interval_minutes=24 * 60,
    )


def _waiting(store: Store) -> list[datetime]:
    with store.session() as session:
        query = select(QueuedJob.next_attempt_at).where(QueuedJob.status == PENDING, QueuedJob.job == SYNC_JOB)
        return list(session.scalars(query))


def test_a_throttled_outlook_sync_waits_for_retry_after_without_calling_graph(
    outlook: OutlookWorld, sqlite_store: Store, tmp_path: Path
) -> None:
    settings = _settings(outlook, tmp_path / "home")
    registry = build_registry(settings)
    therapist = ensure_therapist(sqlite_store, "ana@example.org")
    outlook.seed({"iCalUId": "first@x", "subject": "First", **timed(at(2))})
    connection = add_connection(sqlite_store, therapist, "outlook", "outlook", outlook.settings())
    # Retry-After beyond what one request may wait in the client (120 s): the job gets the error.
    outlook.state.inject("delta", 429, retry_after=600)

    before = datetime.now(UTC)
    assert request_sync(sqlite_store, registry, connection, before)
    InProcessRunner(sqlite_store, registry).run_pending()
    after = datetime.now(UTC)

    (view,) = list_connections(sqlite_store)
    assert view.health == "error" and view.consecutive_failures == 1 and view.backoff_until is not None
    assert before + timedelta(seconds=600) <= view.backoff_until <= after + timedelta(seconds=600)
    assert _waiting(sqlite_store) == [view.backoff_until]  # re-queued for then, not retried by the runner
    delta_calls = len(outlook.graph_requests("delta"))
    assert delta_calls == 1

    # The queued run comes up early (another worker's clock, a notification after a restart): it
    # re-queues itself for backoff_until and Graph hears nothing.
    with sqlite_store.session() as session:
        session.execute(update(QueuedJob).values(next_attempt_at=after))
    InProcessRunner(sqlite_store, registry).run_pending()
    assert len(outlook.graph_requests("delta")) == delta_calls
    assert _waiting(sqlite_store) == [view.backoff_until]
    (still,) = list_connections(sqlite_store)
    assert still.consecutive_failures == 1
