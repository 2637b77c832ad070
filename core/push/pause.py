"""Pausing a connection's channel upkeep when its provider says "too much" (no provider knowledge).

Google answers ``events.watch`` and ``channels.stop`` like any other call: 403/429
``rateLimitExceeded`` (slow down) or 403 ``quotaExceeded`` (the account's usage limits; retrying
soon makes it worse). The renewal job runs every minute; without a pause it would ask again every
minute, and every connection that failed together would ask again together. So a refusal pauses
that connection's upkeep:

- for at least what the provider asked (``Retry-After``),
- doubling with each refusal in a row (rate limit from 5 minutes, quota from 1 hour, capped at 6
  and 24 hours), with +-20 % jitter so paused connections do not all come back in the same minute;
- lifted by the first upkeep that succeeds.

Meanwhile the channel already open keeps delivering until it expires, and the reconciliation sync
keeps the mirror current.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select

from core.push.models import PushPause
from core.store.db import Store

__all__ = [
    "QUOTA_PAUSE",
    "RATE_PAUSE",
    "PauseView",
    "clear_pause",
    "current_pauses",
    "pause_upkeep",
    "paused_connections",
]

RATE_PAUSE = (timedelta(minutes=5), timedelta(hours=6))  # first pause, longest pause
QUOTA_PAUSE = (timedelta(hours=1), timedelta(hours=24))
JITTER = 0.2


@dataclass(frozen=True)
class PauseView:
    """A pause in force: until when, why (one line, no secret), and how many refusals in a row."""

    until: datetime
    reason: str
    failures: int


def current_pauses(store: Store, now: datetime, connection_id: int | None = None) -> dict[int, PauseView]:
    """Pauses in force at ``now`` (of one connection when given), by connection id.

    A row whose ``until`` has passed is no longer a pause: it only remembers the streak until the
    next upkeep (which either lifts it or pauses longer), so it is not shown as one.
    """
    query = select(PushPause).where(PushPause.until > now)
    if connection_id is not None:
        query = query.where(PushPause.connection_id == connection_id)
    with store.session() as session:
        return {
            int(row.connection_id): PauseView(until=row.until, reason=row.reason, failures=row.failures)
            for row in session.scalars(query)
        }


def paused_connections(store: Store, now: datetime) -> dict[int, datetime]:
    """Connections whose upkeep is paused at ``now``, with the end of each pause."""
    return {connection_id: pause.until for connection_id, pause in current_pauses(store, now).items()}


def pause_upkeep(
    store: Store,
    connection_id: int,
    now: datetime,
    *,
    quota: bool,
    reason: str,
    retry_after: float | None = None,
    rand: Callable[[], float] = random.random,
) -> datetime:
    """Record one more refusal for the connection; returns when its upkeep may be tried again."""
    first, longest = QUOTA_PAUSE if quota else RATE_PAUSE
    with store.session() as session:
        row = session.get(PushPause, connection_id)
        failures = (row.failures if row is not None else 0) + 1
        pause: timedelta = min(longest, first * (1 << min(failures - 1, 16)))
        pause *= 1 - JITTER + 2 * JITTER * rand()
        if retry_after is not None:
            pause = max(pause, timedelta(seconds=retry_after))
        until = now + pause
        if row is None:
            session.add(PushPause(connection_id=connection_id, until=until, failures=failures, reason=reason[:200]))
        else:
            row.until, row.failures, row.reason = until, failures, reason[:200]
        return until


def clear_pause(store: Store, connection_id: int) -> None:
    """The provider accepted an upkeep again: forget the refusals."""
    with store.session() as session:
        session.execute(delete(PushPause).where(PushPause.connection_id == connection_id))
