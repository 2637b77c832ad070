"""The outbox relay on procrastinate: outbox events become one ``outbox.deliver_event`` job each.

:func:`relay_once` runs :func:`core.jobs.outbox.relay_in` (events locked ``FOR UPDATE SKIP
LOCKED``, delivery rows created) and defers one job per event with its new deliveries on the same
connection, in the same transaction: either the events are relayed and their jobs queued, or
neither. The job runs the event's deliveries one after another through
:func:`core.jobs.outbox.deliver_event` (each claimed, retried with the RetryPolicy, parked as
:func:`core.jobs.deliver_one` does), so handlers stay idempotent by event id exactly as with the
embedded worker. One job per event, not per delivery (session 14): a moved session's event has
three handlers, and each job costs the queue a defer, a fetch and a finish.

Woken by ``NOTIFY alliance_outbox`` (a trigger on ``outbox``, migration 0010_q9a) through
:func:`listen`, in one worker process at a time, plus :func:`sweep` once a minute, which also
re-queues events with a delivery due again (a retry's backoff ran out, a claim of a dead worker
expired, an operator's retry). ``outbox.deliver`` (one delivery) still runs jobs queued by a
version before per-event jobs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy import text
from sqlalchemy.orm import Session

from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.connect import KEEPALIVES, conninfo
from core.jobs import JobRegistry
from core.jobs.outbox import due_event_ids, mark_finished_events, relay_in
from core.redaction import describe_error
from core.store import Store

__all__ = [
    "DELIVER",
    "DELIVER_EVENT",
    "LEADER_RETRY_SECONDS",
    "OUTBOX_CHANNEL",
    "RELAY_LOCK",
    "defer_delivery",
    "defer_event",
    "listen",
    "relay_once",
    "sweep",
]

log = logging.getLogger(__name__)

DELIVER = "outbox.deliver"  # one delivery: jobs queued by versions before DELIVER_EVENT
DELIVER_EVENT = "outbox.deliver_event"
OUTBOX_CHANNEL = "alliance_outbox"
BATCH = 500
# The session advisory lock of the relaying listener (any number unlikely to be taken by anything
# else on the database: procrastinate itself takes none of this kind).
RELAY_LOCK = 0x616C6C6961_0001  # "allia" + 1
# How often a listener that is not relaying tries to take over.
LEADER_RETRY_SECONDS = 5.0


def delivery_key(delivery_id: int) -> str:
    return f"delivery:{delivery_id}"


def defer_delivery(session: Session, backend: ProcrastinateBackend, delivery_id: int, run_at: datetime | None) -> bool:
    key = delivery_key(delivery_id)
    return backend.defer_in(
        session,
        DELIVER,
        {"delivery_id": delivery_id},
        run_at=run_at,
        queueing_lock=key,
        lock=key,
    )


# Which of these queueing locks a waiting job holds.
_WAITING_KEYS = text(
    "SELECT queueing_lock FROM procrastinate_jobs WHERE status = 'todo' AND queueing_lock = ANY(CAST(:keys AS text[]))"
)


def event_key(event_id: str) -> str:
    return f"event:{event_id}"


def defer_event(
    session: Session,
    backend: ProcrastinateBackend,
    event_id: str,
    delivery_ids: list[int] | None,
    run_at: datetime | None,
) -> bool:
    """Queue the deliveries of one event: ``delivery_ids``, or (None) whichever are due when it runs.

    One job per event waits at a time (its queueing lock): the sweep finding an event whose job
    has not run yet adds nothing, and a job of the event that runs later delivers whatever is due.
    """
    key = event_key(event_id)
    args: dict[str, Any] = {"event_id": event_id}
    if delivery_ids is not None:
        args["delivery_ids"] = delivery_ids
    return backend.defer_in(session, DELIVER_EVENT, args, run_at=run_at, queueing_lock=key, lock=key)


def relay_once(store: Store, registry: JobRegistry, backend: ProcrastinateBackend, now: datetime) -> int:
    """Relay every new outbox event (in batches); how many events were taken."""
    total = 0
    while True:
        with store.session() as session:
            taken, created = relay_in(session, registry, now, limit=BATCH, skip_locked=True)
            for event_id, delivery_ids in created.items():
                defer_event(session, backend, event_id, delivery_ids, None)
        total += taken
        if taken < BATCH:
            return total


def sweep(store: Store, registry: JobRegistry, backend: ProcrastinateBackend, now: datetime) -> int:
    """The one-minute safety net: relay, re-queue events with due deliveries, close finished events; jobs queued."""
    relay_once(store, registry, backend, now)
    queued = 0
    with store.session() as session:
        due = due_event_ids(session, now, 5 * BATCH)
        # Under a backlog most due events still have their job waiting: asked again, procrastinate
        # would refuse each with a unique violation, an ERROR line in PostgreSQL's log apiece.
        waiting = set(session.execute(_WAITING_KEYS, {"keys": [event_key(e) for e in due]}).scalars()) if due else set()
        for event_id in due:
            if event_key(event_id) not in waiting:
                queued += defer_event(session, backend, event_id, None, None)
    mark_finished_events(store, now)
    return queued


async def listen(
    database_url: str,
    on_notify: Callable[[], None],
    *,
    stop: asyncio.Event,
    leader_retry_seconds: float = LEADER_RETRY_SECONDS,
) -> None:
    """Call ``on_notify`` (in a thread) after each burst of outbox notifications until ``stop`` is set.

    One process relays at a time: the listener that holds the relay's advisory lock (a session
    lock on its own connection, so it is released the moment that process or its connection dies).
    Every worker woke on every notification before, and all but one found the events already taken
    (benchmarks/README.md, session 13). The others try for the lock every ``leader_retry_seconds``;
    the one-minute sweep covers the gap after a leader dies. A lost connection is re-opened after a
    pause.
    """
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo(database_url), autocommit=True, **KEEPALIVES
            ) as connection:
                while not await _lead(connection):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=leader_retry_seconds)
                    if stop.is_set():
                        return
                await connection.execute(f"LISTEN {OUTBOX_CHANNEL}")
                await asyncio.to_thread(on_notify)  # whatever arrived before we listened
                while not stop.is_set():
                    got = False
                    async for _notify in connection.notifies(timeout=1.0):
                        got = True
                        break
                    if got:
                        await asyncio.to_thread(on_notify)
        except Exception as exc:  # the database restarting: listen again shortly
            log.warning("outbox listener: %s; listening again in 5 s", describe_error(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=5)


async def _lead(connection: psycopg.AsyncConnection[Any]) -> bool:
    """Whether this connection now holds the relay's lock (kept until the connection closes)."""
    cursor = await connection.execute("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK,))
    row = await cursor.fetchone()
    return bool(row and row[0])
