"""Tables of the client's link: the link itself, Join clicks, the client's check-in, the contact line.

One row per session in ``client_links``: issuing again after a revocation replaces the token in
that row, so a revoked token never resolves again and a session never has two live links.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class ClientLink(Base):
    """The client's link of one session: looked up by the SHA-256 of its token, never by the token."""

    __tablename__ = "client_links"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), unique=True)
    # The client the link was issued to: a session handed to another client stops resolving.
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # The raw token encrypted with the therapist's data key and bound to this session, so the
    # server (and only the server) can show the therapist the URL again.
    token_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class JoinClick(Base):
    """The client pressed Join (a logistics signal: how early or late they came)."""

    __tablename__ = "client_join_clicks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), index=True)
    clicked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class ClientCheckin(Base):
    """What the client confirmed before a session: checklist ticks, today's location, callback number.

    ``answers`` is one JSON object encrypted with the client's data key (location is health-adjacent
    personal data); only the therapist's side ever decrypts it.
    """

    __tablename__ = "client_checkins"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    answers: Mapped[bytes] = mapped_column(LargeBinary)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class TherapistContact(Base):
    """The line a client sees when a session was cancelled, e.g. "Questions? Call 030 1234 567"."""

    __tablename__ = "therapist_contacts"

    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), primary_key=True)
    contact_line: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
