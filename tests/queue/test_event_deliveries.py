"""Outbox deliveries on procrastinate: one queue job per event runs every handler of that event.

A failing handler is retried by a later job of the same event, at its backoff, and the handlers
that succeeded are not run again; the one-minute sweep queues one job for an event whose job went
missing, and no second one while that waits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from alliance.jobs import retry_policy
from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.connect import make_connector
from alliance.queue.relay import DELIVER_EVENT, relay_once, sweep
from alliance.queue.tasks import build_app
from alliance.settings import Settings
from core.jobs import Event, JobRegistry
from core.mirror import add_connection, ensure_therapist
from core.store import OutboxEvent, Store
from tests.queue.conftest import rows, scalar

pytestmark = pytest.mark.postgres

KIND = "test.happened"


class Unavailable(Exception):
    pass


class Handlers:
    """Two handlers of one kind; ``flaky`` fails its first attempt, as a provider's 503 would."""

    def __init__(self) -> None:
        self.runs: list[tuple[str, int]] = []

    def steady(self, store: Store, event: Event) -> None:
        self.runs.append(("steady", event.attempt))

    def flaky(self, store: Store, event: Event) -> None:
        self.runs.append(("flaky", event.attempt))
        if event.attempt == 1:
            raise Unavailable("the provider answered 503")


@pytest.fixture
def handlers() -> Handlers:
    return Handlers()


@pytest.fixture
def registry(handlers: Handlers) -> JobRegistry:
    registry = JobRegistry()
    registry.backend = ProcrastinateBackend()
    registry.add_handler("test.steady", (KIND,), handlers.steady)
    registry.add_handler("test.flaky", (KIND,), handlers.flaky)
    return registry


def _add_event(store: Store) -> str:
    event_id = str(uuid.uuid4())
    therapist_id = ensure_therapist(store, "dr.berger@example.org")
    connection_id = add_connection(store, therapist_id, "ics", "Practice", {"url": "https://example.org/feed.ics"})
    with store.session() as session:
        session.add(OutboxEvent(event_id=event_id, kind=KIND, therapist_id=therapist_id, connection_id=connection_id))
    return event_id


def _work(store: Store, registry: JobRegistry, settings: Settings) -> None:
    """Run every job that is due now in this process, then return."""
    assert isinstance(registry.backend, ProcrastinateBackend)
    app = build_app(
        store,
        registry,
        retry_policy(settings),
        connector=make_connector(settings.effective_database_url, max_size=4),
        backend=registry.backend,
        stale_seconds=60,
    )
    app.run_worker(wait=False, install_signal_handlers=False, listen_notify=False)


def _event_jobs(store: Store) -> list[tuple[str, dict[str, object]]]:
    return [
        (r.status, r.args)
        for r in rows(
            store, "SELECT status::text, args FROM procrastinate_jobs WHERE task_name = :t ORDER BY id", t=DELIVER_EVENT
        )
    ]


def test_one_job_runs_every_handler_of_an_event_and_a_failed_one_comes_back_alone(
    pg_store: Store, registry: JobRegistry, handlers: Handlers, settings: Settings
) -> None:
    assert isinstance(registry.backend, ProcrastinateBackend)
    event_id = _add_event(pg_store)

    assert relay_once(pg_store, registry, registry.backend, datetime.now(UTC)) == 1
    ((status, args),) = _event_jobs(pg_store)  # one job for both deliveries
    assert status == "todo" and args["event_id"] == event_id and len(args["delivery_ids"]) == 2  # type: ignore[arg-type]

    _work(pg_store, registry, settings)

    assert sorted(handlers.runs) == [("flaky", 1), ("steady", 1)]
    states = dict(rows(pg_store, "SELECT handler, status FROM outbox_deliveries"))
    assert states == {"test.steady": "done", "test.flaky": "pending"}
    # The event is queued again for the failed handler's next attempt, not for now.
    retry = rows(
        pg_store,
        "SELECT j.args, j.scheduled_at = d.next_attempt_at AS at_backoff FROM procrastinate_jobs j, outbox_deliveries d"
        " WHERE j.task_name = :t AND j.status = 'todo' AND d.handler = 'test.flaky'",
        t=DELIVER_EVENT,
    )
    assert [(r.args, r.at_backoff) for r in retry] == [({"event_id": event_id}, True)]

    # Its backoff over (moved to now rather than waited for), the next job delivers it, alone.
    with pg_store.engine.begin() as conn:
        conn.exec_driver_sql("UPDATE outbox_deliveries SET next_attempt_at = now() WHERE handler = 'test.flaky'")
        conn.exec_driver_sql("UPDATE procrastinate_jobs SET scheduled_at = now() WHERE status = 'todo'")
    _work(pg_store, registry, settings)

    assert sorted(handlers.runs) == [("flaky", 1), ("flaky", 2), ("steady", 1)]
    assert dict(rows(pg_store, "SELECT handler, status FROM outbox_deliveries")) == {
        "test.steady": "done",
        "test.flaky": "done",
    }
    assert [s for s, _ in _event_jobs(pg_store)] == ["succeeded", "succeeded"]
    assert scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'outbox.deliver'") == 0


def test_the_sweep_queues_one_job_for_an_event_whose_job_went_missing(
    pg_store: Store, registry: JobRegistry, handlers: Handlers, settings: Settings
) -> None:
    assert isinstance(registry.backend, ProcrastinateBackend)
    event_id = _add_event(pg_store)
    relay_once(pg_store, registry, registry.backend, datetime.now(UTC))
    with pg_store.engine.begin() as conn:  # an operator cleared the queue by hand
        conn.exec_driver_sql("DELETE FROM procrastinate_jobs")

    assert sweep(pg_store, registry, registry.backend, datetime.now(UTC)) == 1
    assert sweep(pg_store, registry, registry.backend, datetime.now(UTC)) == 0  # one job waits already
    assert _event_jobs(pg_store) == [("todo", {"event_id": event_id})]

    _work(pg_store, registry, settings)
    assert sorted(handlers.runs) == [("flaky", 1), ("steady", 1)]
