"""The outbox consumer: hands every outbox event to each subscribed handler, at least once.

Two steps, each usable on its own by another runner (a distributed queue's relay task can call
:func:`relay_in` and defer :func:`deliver_event` per event it relayed):

1. :func:`relay` gives each new event one delivery row per subscribed handler (the handler set
   of an event is fixed then; an event no handler wants is marked processed at once) and marks
   it ``relayed_at`` in the same transaction;
2. :func:`deliver_one` claims one due delivery, runs its handler and records the outcome;
   :func:`deliver_event` does so for the due deliveries of one event, one after another.

Guarantee: a handler runs at least once per event until it succeeds; after it succeeded it is
not run again for that event, except when the worker dies between the handler's success and the
commit of the "done" mark. A handler that writes only through ``event.session`` closes that gap:
its writes and the mark commit together. Every other handler must be idempotent by event id.
An event's ``processed_at`` is set once all its deliveries are done.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Table, bindparam, exists, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.jobs import _lifecycle
from core.jobs.models import DONE, PARKED, PENDING, RUNNING, OutboxDelivery
from core.jobs.policy import RetryPolicy
from core.jobs.registry import Event, JobRegistry
from core.redaction import describe_error, format_exception_safely
from core.store import OutboxEvent, Store

__all__ = [
    "deliver_due",
    "deliver_event",
    "deliver_one",
    "due_event_ids",
    "mark_finished_events",
    "relay",
    "relay_in",
]

log = logging.getLogger(__name__)

_DELIVERIES: Table = OutboxDelivery.__table__  # type: ignore[assignment]
_EVENTS: Table = OutboxEvent.__table__  # type: ignore[assignment]

# Built once: every delivery runs both (see core.jobs._lifecycle). On the table, not the mapped
# class, so that SQLAlchemy does not look for the event among the session's objects to update it.
_EVENT_OF_DELIVERY = select(
    _EVENTS.c.event_id,
    _EVENTS.c.kind,
    _EVENTS.c.therapist_id,
    _EVENTS.c.connection_id,
    _EVENTS.c.occurrence_id,
    _EVENTS.c.payload,
    _EVENTS.c.created_at,
).where(_EVENTS.c.event_id == bindparam("event_id"))
# The event is marked when none of its deliveries is left unfinished.
_MARK_PROCESSED_IF_FINISHED = (
    update(_EVENTS)
    .where(
        # (Not "event_id": an UPDATE keeps its target's column names for its own parameters.)
        _EVENTS.c.event_id == bindparam("of_event"),
        _EVENTS.c.processed_at.is_(None),
        ~exists().where(_DELIVERIES.c.event_id == bindparam("of_event"), _DELIVERIES.c.status != DONE),
    )
    .values(processed_at=bindparam("now", type_=_EVENTS.c.processed_at.type))
)


# The relay's statements, built once on the table (not the mapped class: an ORM-enabled statement
# goes through SQLAlchemy's ORM execution, ~12 % of the relaying worker's interpreter time).
_NEW_EVENTS = (
    select(_EVENTS.c.id, _EVENTS.c.event_id, _EVENTS.c.kind)
    .where(_EVENTS.c.relayed_at.is_(None))
    .order_by(_EVENTS.c.id)
    .limit(bindparam("limit"))
)
_NEW_EVENTS_SKIP_LOCKED = _NEW_EVENTS.with_for_update(skip_locked=True)
_MARK_RELAYED = (
    update(_EVENTS)
    .where(_EVENTS.c.id.in_(bindparam("ids", expanding=True)))
    .values(relayed_at=bindparam("now", type_=_EVENTS.c.relayed_at.type))
)
_MARK_UNWANTED_PROCESSED = (
    update(_EVENTS)
    .where(_EVENTS.c.event_id.in_(bindparam("event_ids", expanding=True)), _EVENTS.c.processed_at.is_(None))
    .values(processed_at=bindparam("now", type_=_EVENTS.c.processed_at.type))
)

_UNFINISHED = (PENDING, RUNNING)
# The deliveries of one event due now, and when the next of its unfinished ones is due.
_DUE_OF_EVENT = (
    select(_DELIVERIES.c.id)
    .where(
        _DELIVERIES.c.event_id == bindparam("of_event"),
        _DELIVERIES.c.status.in_(_UNFINISHED),
        _DELIVERIES.c.next_attempt_at <= bindparam("now"),
    )
    .order_by(_DELIVERIES.c.id)
)
_NEXT_DUE_OF_EVENT = select(func.min(_DELIVERIES.c.next_attempt_at)).where(
    _DELIVERIES.c.event_id == bindparam("of_event"), _DELIVERIES.c.status.in_(_UNFINISHED)
)

_INSERTS_IGNORING_DUPLICATES = {
    name: insert(_DELIVERIES)
    .on_conflict_do_nothing(index_elements=["event_id", "handler"])
    .returning(_DELIVERIES.c.id, _DELIVERIES.c.event_id)
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}


def _insert_ignoring_duplicates(session: Session, rows: list[dict[str, object]]) -> dict[str, list[int]]:
    # Two relays racing on one event would both insert its deliveries: the unique key decides.
    # Returns the ids of the rows this call inserted, per event. One statement built once per
    # dialect, its rows sent as one executemany (SQLAlchemy batches them into multi-row INSERTs).
    statement = _INSERTS_IGNORING_DUPLICATES[session.get_bind().dialect.name]
    created: dict[str, list[int]] = {}
    for delivery_id, event_id in session.execute(statement, rows):
        created.setdefault(event_id, []).append(int(delivery_id))
    return created


def relay(store: Store, registry: JobRegistry, now: datetime, *, limit: int = 500) -> int:
    """Create the deliveries of up to ``limit`` new outbox events; returns the number of events taken."""
    with store.session() as session:
        taken, _created = relay_in(session, registry, now, limit=limit)
    return taken


def relay_in(
    session: Session, registry: JobRegistry, now: datetime, *, limit: int = 500, skip_locked: bool = False
) -> tuple[int, dict[str, list[int]]]:
    """:func:`relay` inside the caller's transaction: (events taken, ids of the deliveries created per event id).

    With ``skip_locked`` (PostgreSQL) the events are locked ``FOR UPDATE SKIP LOCKED``, so relays
    running at once in several processes take disjoint events, and a queue adapter can hand the
    new deliveries to its queue in this same transaction (all or nothing).
    """
    query = _NEW_EVENTS_SKIP_LOCKED if skip_locked else _NEW_EVENTS
    events = session.execute(query, {"limit": limit}).all()
    if not events:
        return 0, {}
    nobody_wants: list[str] = []
    rows: list[dict[str, object]] = []
    for _id, event_id, kind in events:
        handlers = registry.handlers_for(kind)
        if not handlers:
            nobody_wants.append(event_id)
        rows.extend(
            {
                "event_id": event_id,
                "handler": h.name,
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for h in handlers
        )
    created: dict[str, list[int]] = {}
    if rows:
        created = _insert_ignoring_duplicates(session, rows)
    # Marked in the transaction that created the deliveries: taken exactly when they exist.
    session.execute(_MARK_RELAYED, {"ids": [row[0] for row in events], "now": now})
    if nobody_wants:
        session.execute(_MARK_UNWANTED_PROCESSED, {"event_ids": nobody_wants, "now": now})
    return len(events), created


def mark_finished_events(store: Store, now: datetime) -> int:
    """Set ``processed_at`` on events whose deliveries are all done.

    :func:`deliver_one` does this itself; this sweep catches the case where the last two handlers
    of an event finished at the same moment in two workers and neither saw the other's commit.
    """
    with store.session() as session:
        any_delivery = exists().where(OutboxDelivery.event_id == OutboxEvent.event_id)
        unfinished = exists().where(OutboxDelivery.event_id == OutboxEvent.event_id, OutboxDelivery.status != DONE)
        result = session.execute(
            update(OutboxEvent)
            .where(OutboxEvent.processed_at.is_(None), any_delivery, ~unfinished)
            .values(processed_at=now)
        )
        count: int = result.rowcount  # type: ignore[attr-defined]
        return count


def _mark_processed_if_finished(session: Session, event_id: str, now: datetime) -> None:
    session.execute(_MARK_PROCESSED_IF_FINISHED, {"of_event": event_id, "now": now})


def deliver_one(
    store: Store, registry: JobRegistry, delivery_id: int, now: datetime, policy: RetryPolicy
) -> str | None:
    """Run one due delivery; returns its new status, or None if it was not due or not ours."""
    with store.one_statement() as statement:  # the claim alone: no transaction around it
        claimed = _lifecycle.claim(statement, _DELIVERIES, delivery_id, now, policy, "handler", "event_id")
    if claimed is None:
        return None
    attempt, handler_name, event_id = claimed
    where = {"event_id": event_id, "handler": handler_name, "attempt": attempt}

    if attempt > policy.max_attempts:
        # The previous (last) attempt never reported back: its worker died, perhaps because of
        # this very event. Park it rather than crash-loop.
        with store.session() as session:
            status = _lifecycle.fail(session, _DELIVERIES, delivery_id, attempt, now, policy, _lifecycle.INTERRUPTED)
        log.error("outbox delivery parked after an interrupted last attempt", extra=where)
        return status

    spec = registry.handler_named(handler_name)
    try:
        if spec is None:
            raise LookupError(f"no outbox handler named {handler_name!r} is registered")
        with store.session() as session:
            row = session.execute(_EVENT_OF_DELIVERY, {"event_id": event_id}).one()
            event = Event(
                event_id=row.event_id,
                kind=row.kind,
                therapist_id=row.therapist_id,
                connection_id=row.connection_id,
                occurrence_id=row.occurrence_id,
                payload=dict(row.payload or {}),
                created_at=row.created_at,
                attempt=attempt,
                session=session,
            )
            spec.fn(store, event)
            _lifecycle.succeed(session, _DELIVERIES, delivery_id, attempt, now)
            _mark_processed_if_finished(session, event_id, now)
    except _lifecycle.LostClaim:
        log.warning("outbox delivery was taken over by another worker; result discarded", extra=where)
        return None
    except Exception as exc:  # any handler failure is retried, never allowed to stop the worker
        error = f"LookupError: {exc}" if spec is None else describe_error(exc)
        with store.session() as session:
            status = _lifecycle.fail(session, _DELIVERIES, delivery_id, attempt, now, policy, error)
        level = logging.ERROR if status == PARKED else logging.WARNING
        log.log(level, "outbox handler failed (%s); now %s", error, status, extra=where)
        log.debug("outbox handler failure: %s", format_exception_safely(exc), extra=where)
        return status
    log.debug("outbox handler done", extra=where)
    return DONE


def deliver_event(
    store: Store,
    registry: JobRegistry,
    event_id: str,
    clock: Callable[[], datetime],
    policy: RetryPolicy,
    delivery_ids: list[int] | None = None,
) -> datetime | None:
    """Run the due deliveries of one event (``delivery_ids``, else every one due), one after another.

    Returns when the next attempt of one still unfinished is due (a handler that failed and backs
    off, or a delivery another worker holds), None when none is left: the caller queues the event
    again for then. One job per event instead of one per handler: a moved session's three become one.
    """
    if delivery_ids is None:
        with store.session() as session:
            delivery_ids = list(session.scalars(_DUE_OF_EVENT, {"of_event": event_id, "now": clock()}))
    finished = [deliver_one(store, registry, d, clock(), policy) in (DONE, PARKED) for d in delivery_ids]
    if all(finished):  # the common case: no second look at the rows (one transaction less)
        return None
    with store.session() as session:
        next_due: datetime | None = session.scalar(_NEXT_DUE_OF_EVENT, {"of_event": event_id})
        return next_due


def due_event_ids(session: Session, now: datetime, limit: int) -> list[str]:
    """Events with a delivery due now (a retry's backoff ran out, a dead worker's claim), oldest due first."""
    query = (
        select(_DELIVERIES.c.event_id)
        .where(_DELIVERIES.c.status.in_(_UNFINISHED), _DELIVERIES.c.next_attempt_at <= now)
        .group_by(_DELIVERIES.c.event_id)
        .order_by(func.min(_DELIVERIES.c.next_attempt_at))
        .limit(limit)
    )
    return list(session.scalars(query))


def deliver_due(store: Store, registry: JobRegistry, now: datetime, policy: RetryPolicy, *, limit: int = 100) -> int:
    """Run up to ``limit`` due deliveries; returns how many handler runs were attempted."""
    with store.session() as session:
        ids = _lifecycle.due_ids(session, _DELIVERIES, now, limit)
    return sum(1 for i in ids if deliver_one(store, registry, i, now, policy) is not None)
