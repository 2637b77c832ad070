"""Per-connection sync backoff and the "needs attention" state (reference/scale.md section 6, rule 2).

A sync that fails because the provider is throttling or briefly down (:class:`SourceUnavailable`)
must not be retried at once, and must not use the job queue's retries either (a retried job under a
queueing lock can wedge a connection). Instead the failure is written on the connection:

- ``consecutive_failures`` counts failures since the last success (any kind of failure), and
  ``failing_since`` is when that streak began;
- ``backoff_until``: no sync of the connection starts before it. It is ``now + Retry-After`` when
  the provider said how long to wait, else a capped exponential backoff with full jitter
  (:func:`backoff_delay`). A failure retrying cannot fix (a revoked grant, a deleted calendar)
  sets no backoff: the next scheduled sync simply tries again;
- after ``max_failures`` failures in a row the connection's health becomes ``needs_attention``
  and the therapist gets one e-mail for the streak (:mod:`core.sync.attention`).

A success clears all three (core.sync.engine, in the transaction that records it).
"""

from __future__ import annotations

import random as _random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store import Store
from core.store.models import Connection

__all__ = [
    "NEEDS_ATTENTION",
    "NEEDS_RECONNECT",
    "BackoffPolicy",
    "FailureRecord",
    "backoff_ceiling",
    "backoff_delay",
    "record_failure",
    "waiting_until",
]

NEEDS_ATTENTION = "needs_attention"
NEEDS_RECONNECT = "needs_reconnect"


@dataclass(frozen=True)
class BackoffPolicy:
    """How long a connection waits after failures, and how many make it "needs attention"."""

    base: timedelta = timedelta(seconds=30)
    cap: timedelta = timedelta(hours=1)
    max_failures: int = 8

    def __post_init__(self) -> None:
        if self.base <= timedelta(0) or self.cap < self.base:
            raise ValueError("a backoff needs 0 < base <= cap")
        if self.max_failures < 1:
            raise ValueError("max_failures must be at least 1")


def backoff_ceiling(failures: int, policy: BackoffPolicy) -> timedelta:
    """The longest wait after the ``failures``-th failure in a row: base * 2^(failures-1), capped."""
    if failures < 1:
        return timedelta(0)
    # In float seconds: a timedelta of base * 2^n overflows (past ~2.7 million years) long
    # before a connection could fail that often, and the cap applies anyway.
    doubled = policy.base.total_seconds() * 2.0 ** min(failures - 1, 1000)
    return timedelta(seconds=min(policy.cap.total_seconds(), doubled))


def backoff_delay(
    failures: int,
    policy: BackoffPolicy,
    *,
    retry_after: float | None = None,
    random: Callable[[], float] = _random.random,
) -> timedelta:
    """How long to wait after the ``failures``-th failure in a row.

    The provider's ``Retry-After`` when it gave one (it is the minimum it accepts; waiting less
    only earns another refusal); otherwise "full jitter": uniform in ``[0, ceiling]``, so many
    connections throttled together (a provider outage) come back spread out, not in one wave.
    """
    if retry_after is not None:
        return timedelta(seconds=max(0.0, retry_after))
    return backoff_ceiling(failures, policy) * min(1.0, max(0.0, random()))


@dataclass(frozen=True)
class FailureRecord:
    """A connection's failure state right after a failure was recorded."""

    consecutive_failures: int
    failing_since: datetime
    backoff_until: datetime | None
    health: str
    therapist_id: int
    name: str
    last_error: str | None

    @property
    def needs_attention(self) -> bool:
        return self.health in (NEEDS_ATTENTION, NEEDS_RECONNECT)


def _locked(session: Session, connection_id: int) -> Connection | None:
    # FOR UPDATE on PostgreSQL: two workers recording failures of one connection count both.
    query = select(Connection).where(Connection.id == connection_id).with_for_update()
    return session.scalar(query)


def record_failure(
    store: Store,
    connection_id: int,
    *,
    retryable: bool,
    retry_after: float | None,
    policy: BackoffPolicy,
    now: datetime,
    random: Callable[[], float] = _random.random,
    then: Callable[[Session, FailureRecord], None] | None = None,
) -> FailureRecord | None:
    """Count one failed sync of a connection and set its backoff; None when the connection is gone.

    ``then`` runs in the same transaction with the new state (the "needs attention" e-mail is
    queued there: the state and the message are written together or not at all).
    """
    with store.session() as session:
        c = _locked(session, connection_id)
        if c is None:
            return None
        failures = (c.consecutive_failures or 0) + 1
        c.consecutive_failures = failures
        if c.failing_since is None:
            c.failing_since = now
        c.backoff_until = (
            now + backoff_delay(failures, policy, retry_after=retry_after, random=random) if retryable else None
        )
        if failures >= policy.max_failures and c.health != NEEDS_RECONNECT:
            c.health = NEEDS_ATTENTION
        record = FailureRecord(
            consecutive_failures=failures,
            failing_since=c.failing_since,
            backoff_until=c.backoff_until,
            health=c.health,
            therapist_id=c.therapist_id,
            name=c.name,
            last_error=c.last_error,
        )
        if then is not None:
            then(session, record)
        return record


def waiting_until(store: Store, connection_id: int, now: datetime) -> datetime | None:
    """The connection's ``backoff_until`` when it is still ahead of ``now``, else None."""
    with store.session() as session:
        until = session.scalar(select(Connection.backoff_until).where(Connection.id == connection_id))
    return until if until is not None and until > now else None


def delay_past_backoff(delay: timedelta, now: datetime, backoff_until: datetime | None) -> timedelta:
    """``delay`` from ``now``, pushed back to ``backoff_until`` when that is later: a sync asked for
    during a backoff (a push ping, a notification) is due when the backoff ends, not before."""
    if backoff_until is not None and backoff_until > now:
        return max(delay, backoff_until - now)
    return delay
