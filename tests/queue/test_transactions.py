"""Enqueue inside the caller's transaction: outbox rows and their jobs commit or vanish together."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.relay import DELIVER_EVENT, defer_event, relay_once
from core.jobs import JobRegistry
from core.jobs.outbox import relay_in
from core.store import OutboxEvent, Store
from tests.queue.conftest import scalar


class Boom(Exception):
    pass


def _event(store: Store, connection_id: int) -> OutboxEvent:
    therapist = scalar(store, "SELECT therapist_id FROM connections WHERE id = :c", c=connection_id)
    return OutboxEvent(
        event_id=str(uuid.uuid4()), kind="occurrence.created", therapist_id=therapist, connection_id=connection_id
    )


def _counts(store: Store) -> tuple[int, int, int]:
    return (
        scalar(store, "SELECT count(*) FROM outbox"),
        scalar(store, "SELECT count(*) FROM outbox_deliveries"),
        scalar(store, "SELECT count(*) FROM procrastinate_jobs"),
    )


def _settle(store: Store) -> None:
    # The fixture's first sync left outbox rows (no worker runs here): only this test's rows count.
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM outbox")


def test_a_rollback_after_an_enqueue_leaves_neither_the_outbox_row_nor_the_job(
    pg_store: Store, registry: JobRegistry, connection_id: int
) -> None:
    backend = registry.backend
    assert isinstance(backend, ProcrastinateBackend)
    _settle(pg_store)
    with pytest.raises(Boom), pg_store.session() as session:
        session.add(_event(pg_store, connection_id))
        session.flush()
        assert backend.defer_in(session, "sync.connection", {"connection_id": connection_id}) is True
        raise Boom
    assert _counts(pg_store) == (0, 0, 0)

    with pg_store.session() as session:  # the same, committed: both are there
        session.add(_event(pg_store, connection_id))
        session.flush()
        backend.defer_in(session, "sync.connection", {"connection_id": connection_id})
    assert _counts(pg_store) == (1, 0, 1)


def test_a_relay_rolled_back_leaves_the_event_unrelayed_and_queues_nothing(
    pg_store: Store, registry: JobRegistry, connection_id: int
) -> None:
    backend = registry.backend
    assert isinstance(backend, ProcrastinateBackend)
    _settle(pg_store)
    with pg_store.session() as session:
        session.add(_event(pg_store, connection_id))
    with pytest.raises(Boom), pg_store.session() as session:
        _taken, created = relay_in(session, registry, datetime.now(UTC), skip_locked=True)
        assert created
        for event_id, delivery_ids in created.items():
            defer_event(session, backend, event_id, delivery_ids, None)
        raise Boom
    assert _counts(pg_store) == (1, 0, 0)
    # Relayed for real: a delivery per subscribed handler, and one job for the event, in the same commit.
    assert relay_once(pg_store, registry, backend, datetime.now(UTC)) == 1
    _outbox, deliveries, jobs = _counts(pg_store)
    assert (deliveries, jobs) == (len(registry.handlers_for("occurrence.created")), 1)
    assert scalar(pg_store, "SELECT task_name FROM procrastinate_jobs") == DELIVER_EVENT
    assert relay_once(pg_store, registry, backend, datetime.now(UTC)) == 0  # nothing relayed twice
