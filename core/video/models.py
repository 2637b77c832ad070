"""Tables of the video lifecycle: video connections, a session's video link, per-host budget,
received call events.

How a Zoom connection is stored: NOT in ``connections`` (that table is what the calendar sync
walks, and a Zoom account has no calendar). A therapist has at most one row in
``video_connections``; its credentials (client id/secret + account id for a Server-to-Server app,
or the user-level tokens, plus the Zoom user) are one encrypted JSON blob bound to the row.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import JSON, BigInteger, Date, ForeignKey, Index, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow

__all__ = ["CallEvent", "HostBudget", "SessionVideo", "VideoConnection"]


class VideoConnection(Base):
    """One therapist's linked video account (Zoom)."""

    __tablename__ = "video_connections"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    therapist_id: Mapped[int] = mapped_column(ForeignKey("therapists.id"), unique=True)
    provider: Mapped[str] = mapped_column(String(40))
    # "s2s" (practice-wide Server-to-Server app) or "user" (the therapist's own OAuth grant).
    kind: Mapped[str] = mapped_column(String(20))
    credentials: Mapped[bytes] = mapped_column(LargeBinary)
    # "ok" or "needs_reconnect" (revoked or invalid credentials).
    health: Mapped[str] = mapped_column(String(20), default="ok")
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class SessionVideo(Base):
    """The video link of one session and the state of its provisioning."""

    __tablename__ = "session_videos"
    __table_args__ = (
        Index("ix_session_videos_due", "next_attempt_at"),
        Index("ix_session_videos_meeting", "provider", "meeting_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("sessions.id"), unique=True)
    # "zoom" (ours), "external" (the event's own Meet/Teams/... link) or None (none needed yet).
    provider: Mapped[str | None] = mapped_column(String(40), nullable=True)
    # see core.video.status
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    meeting_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    join_url: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)  # encrypted
    meeting_start: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    meeting_minutes: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Idempotent create: the marker is written (and committed) before the create is sent; a
    # retry that finds ``create_sent_at`` without ``meeting_id`` looks the marker up first.
    marker: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    create_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # A worker holds the row while it talks to the provider; a dead worker's lease runs out.
    lease_until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # What the call really did (Zoom webhooks): times and roles only, never names or e-mails.
    call_started_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    call_ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    host_joined_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    host_left_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    client_joined_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    client_left_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class HostBudget(Base):
    """Create/update requests sent for one video connection (one host) on one UTC day."""

    __tablename__ = "video_host_budget"

    connection_id: Mapped[int] = mapped_column(ForeignKey("video_connections.id"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer, default=0)


class CallEvent(Base):
    """A provider's call event (Zoom webhook), stored once, applied by the worker."""

    __tablename__ = "video_call_events"
    __table_args__ = (UniqueConstraint("provider", "event", "meeting_uuid", "event_ts"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    provider: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(60))
    meeting_id: Mapped[str] = mapped_column(String(64), index=True)
    meeting_uuid: Mapped[str] = mapped_column(String(128))
    event_ts: Mapped[int] = mapped_column(BigInteger)
    # Only what the handler needs: times and the participant's role; never names or e-mails.
    data: Mapped[dict[str, str | None]] = mapped_column(JSON, default=dict)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    outcome: Mapped[str | None] = mapped_column(String(40), nullable=True)
