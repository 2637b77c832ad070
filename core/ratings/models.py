"""Tables of the alliance rating: the real end of a call, the ratings, licensed measure text."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class SessionEnd(Base):
    """When a session's call really happened (from the video platform), or that nobody came."""

    __tablename__ = "session_ends"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    no_show: Mapped[bool] = mapped_column(Boolean, default=False)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Rating(Base):
    """One client's alliance rating of one session: four 0-10 items, the server-computed total."""

    __tablename__ = "ratings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    # "alliance4" (our own wording) or "srs" (the practice loaded the licensed text).
    measure: Mapped[str] = mapped_column(String(20))
    submitted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    bond: Mapped[float] = mapped_column(Float)
    goals: Mapped[float] = mapped_column(Float)
    approach: Mapped[float] = mapped_column(Float)
    overall: Mapped[float] = mapped_column(Float)
    total: Mapped[float] = mapped_column(Float)
    # Free text is clinical content: encrypted with the client's data key, bound to this session.
    comment: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class MeasureText(Base):
    """Officially licensed item text a practice loaded (``alliance measures load --attest-license``)."""

    __tablename__ = "measure_texts"

    code: Mapped[str] = mapped_column(String(20), primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    copyright_line: Mapped[str] = mapped_column(Text)
    # {"en": {"bond": {"prompt", "low", "high"}, ...}, "es": {...}}
    locales: Mapped[dict[str, Any]] = mapped_column(JSON)
    attested_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class RatingDecline(Base):
    """The client chose "I'd rather not answer" on the rating page (alert rule R6 reads it).

    One row per session: declining again changes nothing. A rating submitted later still counts
    (the client changed their mind); the decline then stays only as a record of the first answer.
    """

    __tablename__ = "rating_declines"

    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), primary_key=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("clients.id"), index=True)
    declined_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
