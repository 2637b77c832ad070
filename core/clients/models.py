"""Tables of clients and sessions.

A session is an occurrence that belongs to a client (DESIGN.md, "Identity"). It points at the
occurrence row, whose identity survives reschedules and re-syncs, so everything hung off a
session survives them too.
"""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class Modality(enum.StrEnum):
    ONLINE = "online"
    IN_PERSON = "in_person"


class SessionSource(enum.StrEnum):
    """Why an occurrence is a session; a manual assignment beats a series, a series beats a rule."""

    MANUAL = "manual"
    SERIES = "series"
    RULE = "rule"


class Client(Base):
    """A pseudonymous client of one therapist: a random code, everything else encrypted."""

    __tablename__ = "clients"
    __table_args__ = (
        UniqueConstraint("therapist_id", "code"),
        Index("ix_clients_therapist_email_index", "therapist_id", "email_index"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"))
    code: Mapped[str] = mapped_column(String(16))
    # Name, e-mail, phone, time zone and preferred modality as one JSON object, encrypted with
    # the client's own data key (wrapped by the therapist's) and bound to this row.
    details: Mapped[bytes] = mapped_column(LargeBinary)
    # HMAC of the normalised e-mail under a key derived from the therapist's data key: lets the
    # attendee rule find a client without decrypting every client, and reveals nothing by itself.
    email_index: Mapped[str | None] = mapped_column(String(64), nullable=True)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SeriesAssignment(Base):
    """ "This series belongs to that client from ``from_start`` on", also for instances synced later."""

    __tablename__ = "series_assignments"
    __table_args__ = (Index("ix_series_assignments_series", "connection_id", "ical_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    ical_uid: Mapped[str] = mapped_column(Text)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    from_start: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TherapySession(Base):
    """An occurrence that belongs to a client."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurrence_id: Mapped[int] = mapped_column(ForeignKey("occurrences.id"), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    modality: Mapped[str] = mapped_column(String(20))
    source: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
