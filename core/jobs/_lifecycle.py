"""Claim / succeed / fail for rows with the pending -> running -> done | parked life cycle.

Shared by outbox deliveries and deferred jobs (both tables carry the same columns). Each step is
a conditional UPDATE, so two workers (threads or processes, SQLite or PostgreSQL) never both own
a row: PostgreSQL re-checks the WHERE clause after waiting for a concurrent update of the row,
SQLite serialises writers.
"""

from __future__ import annotations

from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session
from sqlalchemy.sql.dml import ReturningUpdate, Update

from core.jobs.models import DONE, PARKED, PENDING, RUNNING
from core.jobs.policy import RetryPolicy

INTERRUPTED = "Interrupted: the worker stopped during the last attempt"


class LostClaim(Exception):
    """The claim on a row expired and another worker took it over; this run's result is void."""


def due_ids(session: Session, table: Table, now: datetime, limit: int) -> list[int]:
    """Ids of rows due now, oldest due first (running rows whose claim has run out included)."""
    query = (
        select(table.c.id)
        .where(table.c.status.in_((PENDING, RUNNING)), table.c.next_attempt_at <= now)
        .order_by(table.c.next_attempt_at, table.c.id)
        .limit(limit)
    )
    return list(session.scalars(query))


# The statements of a row's life cycle are built once per table (and claim's returned columns):
# a worker runs them for every delivery and job, and building them (each column comparison, the
# values clause) cost SQLAlchemy more than executing them did.


@cache
def _claim_statement(table: Table, columns: tuple[str, ...]) -> ReturningUpdate[Any]:
    return (
        update(table)
        .where(
            table.c.id == bindparam("row_id"),
            table.c.status.in_((PENDING, RUNNING)),
            table.c.next_attempt_at <= bindparam("now"),
        )
        .values(
            status=RUNNING,
            attempts=table.c.attempts + 1,
            next_attempt_at=bindparam("claimed_until", type_=table.c.next_attempt_at.type),
            updated_at=bindparam("now"),
        )
        .returning(table.c.attempts, *(table.c[name] for name in columns))
    )


@cache
def _succeed_statement(table: Table) -> Update:
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.status == RUNNING, table.c.attempts == bindparam("attempt"))
        .values(status=DONE, done_at=bindparam("now"), updated_at=bindparam("now"))
    )


@cache
def _fail_statement(table: Table) -> Update:
    return (
        update(table)
        .where(table.c.id == bindparam("row_id"), table.c.status == RUNNING, table.c.attempts == bindparam("attempt"))
        .values(
            status=bindparam("new_status", type_=table.c.status.type),
            next_attempt_at=bindparam("due", type_=table.c.next_attempt_at.type),
            last_error=bindparam("error", type_=table.c.last_error.type),
            updated_at=bindparam("now", type_=table.c.updated_at.type),
        )
    )


def claim(
    session: Session | Connection, table: Table, row_id: int, now: datetime, policy: RetryPolicy, *columns: str
) -> tuple[Any, ...] | None:
    """Take a due row for this worker: a tuple of its attempt number and ``columns`` (as they are
    after the claim), or None if it is not (or no longer) due.

    One statement: the claim returns what the caller runs (a delivery's handler and event, a job's
    name and arguments) instead of reading the row again (core.jobs.outbox, core.jobs.queue); a
    caller with nothing else to do in the transaction runs it on its own (``Store.one_statement``).
    """
    claimed = session.execute(
        _claim_statement(table, columns),
        {"row_id": row_id, "now": now, "claimed_until": now + policy.claim_for},
    ).first()
    return None if claimed is None else tuple(claimed)


def succeed(session: Session, table: Table, row_id: int, attempt: int, now: datetime) -> None:
    """Mark the row done; raises :class:`LostClaim` if another worker took it over meanwhile."""
    result = session.execute(_succeed_statement(table), {"row_id": row_id, "attempt": attempt, "now": now})
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise LostClaim(f"{table.name} row {row_id} was taken over by another worker")


def fail(
    session: Session, table: Table, row_id: int, attempt: int, now: datetime, policy: RetryPolicy, error: str
) -> str | None:
    """Record a failed attempt: back to pending with a backed-off due time, or parked after the last.

    Returns the new status, or None when another worker owns the row by now.
    """
    parked = attempt >= policy.max_attempts
    status = PARKED if parked else PENDING
    result = session.execute(
        _fail_statement(table),
        {
            "row_id": row_id,
            "attempt": attempt,
            "new_status": status,
            "due": now if parked else now + policy.backoff(attempt),
            "error": error,
            "now": now,
        },
    )
    return status if result.rowcount == 1 else None  # type: ignore[attr-defined]


def requeue(session: Session, table: Table, ids: list[int] | None, now: datetime) -> int:
    """Put parked rows (all of them with ``ids=None``) back to pending with a fresh attempt budget."""
    query = update(table).where(table.c.status == PARKED)
    if ids is not None:
        query = query.where(table.c.id.in_(ids))
    result = session.execute(query.values(status=PENDING, attempts=0, next_attempt_at=now, updated_at=now))
    count: int = result.rowcount  # type: ignore[attr-defined]
    return count
