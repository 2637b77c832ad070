"""Syncing one connection as a job: coalesced requests (push pings) and the spread reconciliation.

- :data:`SYNC_CONNECTION` syncs one connection. It is always requested through
  :func:`request_sync` (``core.jobs.coalesce``): however many pings arrive, at most one run waits
  per connection, and a ping during a run gets exactly one follow-up run.
- :func:`plan_reconciliation` is the periodic sweep (``sync.all``): push is "not 100% reliable"
  (Google's push guide), so every connection is also synced once per ALLIANCE_SYNC_INTERVAL_MINUTES,
  each at its own phase of the interval (``core.jobs.spread``), so many connections never call
  their provider in the same minute.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy.orm import Session

from alliance.settings import Settings
from alliance.syncing import sync_one
from core.jobs import JobRegistry
from core.jobs.coalesce import RunRequest, request_run_in, request_runs_in
from core.jobs.spread import reconcile_at
from core.mirror import connection_to_sync, list_connections
from core.store import Store
from core.sync.backoff import delay_past_backoff, waiting_until

__all__ = [
    "FOLLOW_UP_DELAY",
    "SYNC_CONNECTION",
    "SyncWanted",
    "plan_reconciliation",
    "request_sync",
    "request_sync_after",
    "request_sync_in",
    "request_syncs_in",
    "sweep_period",
    "sync_connection_job",
    "sync_key",
]

log = logging.getLogger(__name__)

SYNC_CONNECTION = "sync.connection"
# A sync found busy (a manual sync from the API or CLI holds the connection) is asked again this late.
FOLLOW_UP_DELAY = timedelta(seconds=2)


def sync_key(connection_id: int) -> str:
    """The coalescing key of one connection's syncs."""
    return f"sync:{connection_id}"


def sweep_period(settings: Settings) -> timedelta:
    """How often the reconciliation sweep runs: every minute, or every interval if that is shorter."""
    return min(timedelta(minutes=1), timedelta(minutes=settings.sync_interval_minutes))


def request_sync(
    store: Store, registry: JobRegistry, connection_id: int, now: datetime, delay: timedelta = timedelta(0)
) -> bool:
    """Ask for one sync of a connection; False when a waiting request absorbed this one.

    Never earlier than the connection's ``backoff_until`` (core.sync.backoff): a storm of push
    pings during a provider's throttling queues one run for the end of the backoff, not one each.
    """
    backoff_until = waiting_until(store, connection_id, now)
    return request_sync_after(store, registry, connection_id, now, delay, backoff_until=backoff_until)


def request_sync_after(
    store: Store,
    registry: JobRegistry,
    connection_id: int,
    now: datetime,
    delay: timedelta,
    *,
    backoff_until: datetime | None,
) -> bool:
    """:func:`request_sync` for a caller that read ``backoff_until`` already (with the channel it
    verified): one query less per ping."""
    with store.session() as session:
        return request_sync_in(session, registry, connection_id, now, delay, backoff_until=backoff_until)


def request_sync_in(
    session: Session,
    registry: JobRegistry,
    connection_id: int,
    now: datetime,
    delay: timedelta,
    *,
    backoff_until: datetime | None,
) -> bool:
    """:func:`request_sync_after` inside the caller's transaction (a push ping verified in it): the
    ping's claim and its sync request commit together, one transaction per ping."""
    delay = delay_past_backoff(delay, now, backoff_until)
    return request_run_in(
        session,
        registry,
        SYNC_CONNECTION,
        key=sync_key(connection_id),
        now=now,
        delay=delay,
        connection_id=connection_id,
    )


class SyncWanted(NamedTuple):
    """One connection's sync, as a ping asks for it: when the ping came, how long the sync waits
    (spacing), and the connection's ``backoff_until`` read with its channel."""

    connection_id: int
    now: datetime
    delay: timedelta
    backoff_until: datetime | None


def request_syncs_in(session: Session, registry: JobRegistry, wanted: Sequence[SyncWanted]) -> list[bool]:
    """:func:`request_sync_in` for several connections in the caller's transaction (a webhook's
    batch of pings): one result per connection, in order; False where a waiting run absorbed it."""
    requests = [
        RunRequest(
            {"connection_id": w.connection_id},
            sync_key(w.connection_id),
            w.now + delay_past_backoff(w.delay, w.now, w.backoff_until),
        )
        for w in wanted
    ]
    return request_runs_in(session, registry, SYNC_CONNECTION, requests)


def sync_connection_job(
    store: Store,
    settings: Settings,
    registry: JobRegistry,
    connection_id: int,
    *,
    now: Callable[[], datetime],
    progress: Callable[[int, int | None], None] | None = None,
) -> None:
    """Sync one connection; a source failure is recorded on the connection (health), not retried early.

    A retryable failure (throttling, 5xx, timeouts) sets the connection's ``backoff_until``
    (core.sync.backoff) and this job asks for itself again then; a request arriving meanwhile (a
    push ping, the reconciliation sweep) does not call the provider early: it re-requests the run
    for ``backoff_until`` and returns. No job-queue retry is involved (reference/scale.md 6.2).
    """
    live = connection_to_sync(store, connection_id)
    if live is None:
        log.info("sync of connection %s skipped: it was removed", connection_id)
        return
    connection, timezone = live
    started = now()
    if connection.backoff_until is not None and connection.backoff_until > started:
        log.info("sync of connection %s waits for its backoff", connection_id)
        request_sync(store, registry, connection_id, started, connection.backoff_until - started)
        return
    outcome = sync_one(store, settings, connection, progress=progress, clock=now, timezone=timezone)
    if outcome.failure == "busy":
        # Someone else's sync (the API's "sync now") holds it and may have started before the
        # change this run was asked for: ask once more rather than lose it.
        request_sync(store, registry, connection_id, now(), FOLLOW_UP_DELAY)
    elif outcome.backoff_until is not None:
        at = now()
        request_sync(store, registry, connection_id, at, max(timedelta(0), outcome.backoff_until - at))


def plan_reconciliation(store: Store, settings: Settings, registry: JobRegistry, now: datetime) -> int:
    """Request the reconciliation syncs falling due before the next sweep; how many were requested."""
    interval = timedelta(minutes=settings.sync_interval_minutes)
    horizon = sweep_period(settings)
    requested = 0
    for connection in list_connections(store, with_settings=False):
        at = reconcile_at(sync_key(connection.id), connection.last_sync_at, now, interval, horizon)
        if at is None:
            continue
        request_sync(store, registry, connection.id, now, at - now)
        requested += 1
    return requested
