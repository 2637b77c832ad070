"""The outbox relay on procrastinate: outbox events become one ``outbox.deliver`` job per delivery.

:func:`relay_once` runs :func:`core.jobs.outbox.relay_in` (events locked ``FOR UPDATE SKIP
LOCKED``, delivery rows created) and defers each new delivery's job on the same connection, in
the same transaction: either the events are relayed and their jobs queued, or neither. Delivery
itself is :func:`core.jobs.deliver_one` (claims, retries with the RetryPolicy, parks), so handlers
stay idempotent by event id exactly as with the embedded worker.

Woken by ``NOTIFY alliance_outbox`` (a trigger on ``outbox``, migration 0010_q9a) through
:func:`listen`, plus :func:`sweep` once a minute, which also re-queues deliveries that are due
again (a retry's backoff ran out, a claim of a dead worker expired, an operator's retry).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

import psycopg
from sqlalchemy.orm import Session

from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.connect import KEEPALIVES, conninfo
from core.jobs import JobRegistry, OutboxDelivery, _lifecycle
from core.jobs.outbox import mark_finished_events, relay_in
from core.redaction import describe_error
from core.store import Store

__all__ = ["DELIVER", "OUTBOX_CHANNEL", "defer_delivery", "listen", "relay_once", "sweep"]

log = logging.getLogger(__name__)

DELIVER = "outbox.deliver"
OUTBOX_CHANNEL = "alliance_outbox"
BATCH = 500


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


def relay_once(store: Store, registry: JobRegistry, backend: ProcrastinateBackend, now: datetime) -> int:
    """Relay every new outbox event (in batches); how many events were taken."""
    total = 0
    while True:
        with store.session() as session:
            taken, delivery_ids = relay_in(session, registry, now, limit=BATCH, skip_locked=True)
            for delivery_id in delivery_ids:
                defer_delivery(session, backend, delivery_id, None)
        total += taken
        if taken < BATCH:
            return total


def sweep(store: Store, registry: JobRegistry, backend: ProcrastinateBackend, now: datetime) -> int:
    """The one-minute safety net: relay, re-queue due deliveries, close finished events; deliveries queued."""
    relay_once(store, registry, backend, now)
    queued = 0
    with store.session() as session:
        table = OutboxDelivery.__table__
        for delivery_id in _lifecycle.due_ids(session, table, now, 5 * BATCH):  # type: ignore[arg-type]
            queued += defer_delivery(session, backend, delivery_id, None)
    mark_finished_events(store, now)
    return queued


async def listen(database_url: str, on_notify: Callable[[], None], *, stop: asyncio.Event) -> None:
    """Call ``on_notify`` (in a thread) after each burst of outbox notifications until ``stop`` is set.

    A lost connection is re-opened after a pause; the one-minute sweep covers the gap.
    """
    while not stop.is_set():
        try:
            async with await psycopg.AsyncConnection.connect(
                conninfo(database_url), autocommit=True, **KEEPALIVES
            ) as connection:
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
