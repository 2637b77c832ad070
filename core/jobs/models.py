"""Tables of the job runner: outbox deliveries, deferred jobs, periodic job state.

Deliveries and deferred jobs share one life cycle (``status``):
``pending`` (due at ``next_attempt_at``) -> ``running`` (claimed; ``next_attempt_at`` is then the
end of the claim, after which another worker may take it over) -> ``done`` or, after a failure,
``pending`` again with a backed-off ``next_attempt_at`` or ``parked`` after the last attempt.
``last_error`` holds one line without content (:func:`core.redaction.describe_error`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow

PENDING = "pending"
RUNNING = "running"
DONE = "done"
PARKED = "parked"


class OutboxDelivery(Base):
    """One handler's delivery of one outbox event; at most one row per (event, handler)."""

    __tablename__ = "outbox_deliveries"
    __table_args__ = (
        UniqueConstraint("event_id", "handler"),
        Index("ix_outbox_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("outbox.event_id"))
    handler: Mapped[str] = mapped_column(String(80))
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class QueuedJob(Base):
    """A job deferred by name with JSON arguments (ids, never content)."""

    __tablename__ = "queued_jobs"
    __table_args__ = (
        Index("ix_queued_jobs_due", "status", "next_attempt_at"),
        # At most one *waiting* job per queueing lock: a burst of "sync connection 7" requests
        # while one waits coalesces into it; one may wait while another runs (procrastinate's
        # queueing_lock has the same meaning).
        Index(
            "uq_queued_jobs_queueing_lock_pending",
            "queueing_lock",
            unique=True,
            sqlite_where=text("status = 'pending'"),
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    job: Mapped[str] = mapped_column(String(80))
    args: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    queueing_lock: Mapped[str | None] = mapped_column(String(120), nullable=True)
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    done_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class PeriodicJobState(Base):
    """When a periodic job is next due, and who is running it (a lease, so no two run it)."""

    __tablename__ = "periodic_jobs"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    next_run_at: Mapped[datetime] = mapped_column(UtcDateTime)
    running_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_finished_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
