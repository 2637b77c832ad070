"""SQLAlchemy tables of the mirror.

Rows are never hard-deleted by a sync: a cancellation is a status, history is append-only.
Instants are stored as aware UTC datetimes (``UtcDateTime``) so SQLite and PostgreSQL agree.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic migrations are identical on SQLite and PostgreSQL.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime]):
    """Aware datetimes in, aware UTC datetimes out; naive input is a programming error."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        # SQLite has no time zone type: store naive UTC text, re-attach UTC when reading.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Therapist(Base):
    __tablename__ = "therapists"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    display_name: Mapped[str] = mapped_column(String(200), default="")
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Connection(Base):
    """One linked provider account + calendar of one therapist."""

    __tablename__ = "connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), index=True)
    provider: Mapped[str] = mapped_column(String(40))
    name: Mapped[str] = mapped_column(String(200))
    # Non-secret metadata only. What a provider needs to connect (feed URLs with embedded secrets,
    # OAuth tokens) lives encrypted in ``credentials`` (core.mirror).
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    credentials: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    cursor: Mapped[str | None] = mapped_column(Text, nullable=True)
    # ok | error | needs_reconnect | needs_attention (K failures in a row, core.sync.backoff)
    health: Mapped[str] = mapped_column(String(20), default="ok")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_sync_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_success_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_result: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    # Lease that keeps syncs of one connection one at a time, across processes.
    lock_owner: Mapped[str | None] = mapped_column(String(64), nullable=True)
    lock_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # Set when the therapist removes the connection: it is no longer synced or listed, and its
    # occurrences are hidden, but the rows stay, because sessions (and what hangs off them) point
    # at occurrences and a sync never hard-deletes (core.mirror.remove_connection).
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # Bumped by every transaction that changes what a listing of this connection shows (its
    # occurrences, its name): readers compare it to skip recomputing an unchanged listing.
    listing_revision: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # Sync backoff (core.sync.backoff): no sync before ``backoff_until`` after a retryable failure;
    # failures in a row since the last success, and when that streak began (one "needs attention"
    # e-mail per streak).
    backoff_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class Occurrence(Base):
    """One concrete time slot; identity is (connection, iCalUID, original start)."""

    __tablename__ = "occurrences"
    __table_args__ = (
        UniqueConstraint("connection_id", "ical_uid", "recurrence_id"),
        Index("ix_occurrences_connection_start", "connection_id", "start_utc"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    ical_uid: Mapped[str] = mapped_column(Text)
    recurrence_id: Mapped[str] = mapped_column(String(40), default="")
    # Provider's own id: a lookup key only, never the identity.
    provider_id: Mapped[str | None] = mapped_column(Text, nullable=True, index=True)
    status: Mapped[str] = mapped_column(String(20))
    all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    start_utc: Mapped[datetime] = mapped_column(UtcDateTime)
    end_utc: Mapped[datetime] = mapped_column(UtcDateTime)
    timezone: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Title, description, location, attendees and the detected video link, as one JSON object
    # encrypted with the therapist's data key (core.sync.content); never stored in plaintext.
    content: Mapped[bytes] = mapped_column(LargeBinary)
    content_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OccurrenceHistory(Base):
    """Append-only record of every create / reschedule / update / cancel / restore."""

    __tablename__ = "occurrence_history"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("occurrences.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    old_start_utc: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    old_end_utc: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    new_start_utc: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    new_end_utc: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class OutboxEvent(Base):
    """Domain events written in the same transaction as the change they describe.

    Consumers read them at least once and are idempotent by ``event_id``. Payloads carry ids and
    times only, never titles or other content that could name a client.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        # The relay takes the events it has not handed out yet, oldest first: an index of those
        # alone, so its work does not grow with events still being delivered (migration 0015).
        Index(
            "ix_outbox_unrelayed",
            "id",
            sqlite_where=text("relayed_at IS NULL"),
            postgresql_where=text("relayed_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True, default=lambda: str(uuid.uuid4()))
    kind: Mapped[str] = mapped_column(String(40))
    therapist_id: Mapped[int] = mapped_column(Integer)
    connection_id: Mapped[int] = mapped_column(Integer)
    occurrence_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    # When the relay gave the event its deliveries (or found that no handler wants it).
    relayed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
