"""The table of push channels (one row per channel ever opened; stopped ones keep their row a while)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow


class PushChannel(Base):
    """One notification channel a provider opened for a connection.

    ``channel_id`` is ours (a random UUID, sent to the provider); ``resource_id`` is the provider's
    opaque id of the watched collection. ``token`` is the encrypted shared secret the provider
    echoes on every ping. Renewal opens a new channel before ``expires_at`` and then stops this one
    (``stopped_at``): for a while both are live, as providers allow.
    """

    __tablename__ = "push_channels"
    __table_args__ = (Index("ix_push_channels_connection", "connection_id", "expires_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"))
    provider: Mapped[str] = mapped_column(String(40))
    channel_id: Mapped[str] = mapped_column(String(64), unique=True)
    resource_id: Mapped[str] = mapped_column(String(255))
    token: Mapped[bytes] = mapped_column(LargeBinary)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    # The highest message number of a ping acted on (Google's X-Goog-Message-Number grows per
    # channel): a delivery numbered no higher is a re-delivery and needs no sync (core.push.messages).
    last_message_number: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class PushPause(Base):
    """A connection whose provider asked us to slow down (quota or rate limit) while its push
    channel was being opened, renewed or stopped: channel upkeep waits until ``until``.

    One row per paused connection; ``failures`` counts the refusals in a row (the pause doubles
    with each); the row goes when an upkeep succeeds.
    """

    __tablename__ = "push_pauses"

    connection_id: Mapped[int] = mapped_column(ForeignKey("connections.id"), primary_key=True)
    until: Mapped[datetime] = mapped_column(UtcDateTime)
    failures: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str] = mapped_column(String(200))
