"""The outbox's own bookkeeping: the relay marks what it handed out and reads only what it has not
(migration 0015_outbox_relayed); a delivery claims, runs and marks in four statements."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from alembic import command
from sqlalchemy import event, select, text

from core.jobs import JobRegistry, RetryPolicy
from core.jobs.models import OutboxDelivery
from core.jobs.outbox import deliver_one, relay
from core.store import OutboxEvent, Store
from core.store.db import alembic_config, make_engine

T0 = datetime(2026, 11, 3, 9, 0, tzinfo=UTC)


def _registry() -> JobRegistry:
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", lambda store, event: None)
    registry.add_handler("mail", "occurrence.created", lambda store, event: None)
    return registry


def _add_event(store: Store, kind: str = "occurrence.created") -> str:
    event_id = str(uuid.uuid4())
    with store.session() as session:
        session.add(
            OutboxEvent(event_id=event_id, kind=kind, therapist_id=1, connection_id=1, payload={}, created_at=T0)
        )
    return event_id


def _relayed(store: Store) -> dict[str, datetime | None]:
    with store.session() as session:
        return {event_id: at for event_id, at in session.execute(select(OutboxEvent.event_id, OutboxEvent.relayed_at))}


def test_each_event_is_relayed_once_and_marked_with_its_deliveries(store: Store) -> None:
    registry = _registry()
    wanted, unwanted = _add_event(store), _add_event(store, kind="nobody.listens")

    assert relay(store, registry, T0) == 2
    assert _relayed(store) == {wanted: T0, unwanted: T0}
    with store.session() as session:
        handlers = sorted(session.scalars(select(OutboxDelivery.handler).where(OutboxDelivery.event_id == wanted)))
        unwanted_done = session.scalar(select(OutboxEvent.processed_at).where(OutboxEvent.event_id == unwanted))
    assert handlers == ["links", "mail"]
    assert unwanted_done == T0  # no handler wants it: processed at once, as before

    # Its deliveries are still pending: the next relay leaves the event alone.
    later = _add_event(store)
    assert relay(store, registry, T0) == 1
    assert set(_relayed(store)) == {wanted, unwanted, later} and all(_relayed(store).values())


def test_the_migration_marks_events_relayed_before_it_and_leaves_the_others_to_the_relay(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0014_fetch_plan")
    with engine.begin() as conn:
        for n, processed in ((1, None), (2, "2026-11-03 09:05:00.000000"), (3, None)):
            conn.execute(
                text(
                    "INSERT INTO outbox (event_id, kind, therapist_id, connection_id, payload, created_at,"
                    " processed_at) VALUES (:e, 'occurrence.created', 1, 1, '{}', '2026-11-03 09:00:00.000000', :p)"
                ),
                {"e": f"event-{n}", "p": processed},
            )
        # Event 1 was relayed (it has a delivery), event 2 finished, event 3 is new.
        conn.execute(
            text(
                "INSERT INTO outbox_deliveries (event_id, handler, status, attempts, next_attempt_at, created_at,"
                " updated_at) VALUES ('event-1', 'links', 'pending', 0, '2026-11-03 09:00:00.000000',"
                " '2026-11-03 09:00:00.000000', '2026-11-03 09:00:00.000000')"
            )
        )
    command.upgrade(config, "heads")
    store = Store(engine)
    try:
        marked = _relayed(store)
        assert marked["event-1"] is not None and marked["event-2"] is not None and marked["event-3"] is None

        assert relay(store, _registry(), T0) == 1  # only the new one
        with store.session() as session:
            per_event = session.execute(
                select(OutboxDelivery.event_id, OutboxDelivery.handler).order_by(OutboxDelivery.id)
            ).all()
        assert per_event == [("event-1", "links"), ("event-3", "links"), ("event-3", "mail")]

        command.downgrade(config, "0014_fetch_plan")
        with engine.connect() as conn:
            columns = {row[1] for row in conn.execute(text("PRAGMA table_info(outbox)"))}
        assert "relayed_at" not in columns
    finally:
        store.close()


def test_a_delivery_reads_and_marks_its_rows_in_four_statements(store: Store) -> None:
    # The claim returns the handler and event it runs, and the event is marked processed by one
    # conditional UPDATE: claim, event read, done mark, event mark (core.jobs.outbox.deliver_one).
    ran: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", lambda store, ev: ran.append(ev.event_id))
    event_id = _add_event(store)
    relay(store, registry, T0)
    with store.session() as session:
        delivery_id = session.scalar(select(OutboxDelivery.id))
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if "outbox" in statement:
            statements.append(statement.split()[0].upper())

    event.listen(store.engine, "before_cursor_execute", count)
    try:
        assert deliver_one(store, registry, delivery_id, T0, RetryPolicy()) == "done"
    finally:
        event.remove(store.engine, "before_cursor_execute", count)

    assert ran == [event_id]
    assert statements == ["UPDATE", "SELECT", "UPDATE", "UPDATE"]
    with store.session() as session:
        assert session.scalar(select(OutboxEvent.processed_at).where(OutboxEvent.event_id == event_id)) == T0
