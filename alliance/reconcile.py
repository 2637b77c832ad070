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
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import select

from alliance.settings import Settings
from alliance.syncing import sync_one
from core.jobs import JobRegistry
from core.jobs.coalesce import request_run
from core.jobs.spread import reconcile_at
from core.mirror import ConnectionView, get_connection, list_connections
from core.store import Store
from core.store.models import Connection

__all__ = [
    "FOLLOW_UP_DELAY",
    "SYNC_CONNECTION",
    "plan_reconciliation",
    "request_sync",
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
    """Ask for one sync of a connection; False when a waiting request absorbed this one."""
    return request_run(
        store, registry, SYNC_CONNECTION, key=sync_key(connection_id), now=now, delay=delay, connection_id=connection_id
    )


def _live_connection(store: Store, connection_id: int) -> ConnectionView | None:
    with store.session() as session:
        therapist_id = session.scalar(select(Connection.therapist_id).where(Connection.id == connection_id))
    if therapist_id is None:
        return None
    return get_connection(store, therapist_id, connection_id)


def sync_connection_job(
    store: Store,
    settings: Settings,
    registry: JobRegistry,
    connection_id: int,
    *,
    now: Callable[[], datetime],
    progress: Callable[[int, int | None], None] | None = None,
) -> None:
    """Sync one connection; a source failure is recorded on the connection (health), not retried early."""
    connection = _live_connection(store, connection_id)
    if connection is None:
        log.info("sync of connection %s skipped: it was removed", connection_id)
        return
    outcome = sync_one(store, settings, connection, progress=progress)
    if outcome.failure == "busy":
        # Someone else's sync (the API's "sync now") holds it and may have started before the
        # change this run was asked for: ask once more rather than lose it.
        request_sync(store, registry, connection_id, now(), FOLLOW_UP_DELAY)


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
