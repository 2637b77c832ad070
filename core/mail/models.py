"""The mail outbox: every message Alliance sends waits here until a transport accepted it.

A message is queued in the transaction of what caused it (a session assigned, a reminder due),
so it is never lost; a worker claims it, hands it to the transport and marks it sent. The
recipient, subject, body and attachments are one encrypted envelope (the client's key when the
message is about a client), so erasing a client makes their queued mail unreadable too.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.store.models import Base, UtcDateTime, utcnow

PENDING = "pending"  # waiting for send_after / next_attempt_at
SENDING = "sending"  # claimed by a worker until claimed_until
SENT = "sent"
WITHDRAWN = "withdrawn"  # no longer wanted (session cancelled, moved, reminder past)
FAILED = "failed"  # refused for good (a bad address, an erased client): last_error says why


class MailMessage(Base):
    __tablename__ = "mail_messages"
    __table_args__ = (
        Index("ix_mail_messages_due", "status", "next_attempt_at"),
        Index("ix_mail_messages_session", "session_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # What makes a message the same message: queuing it twice keeps the first (never sent twice).
    dedupe_key: Mapped[str] = mapped_column(String(200), unique=True)
    purpose: Mapped[str] = mapped_column(String(40))
    therapist_id: Mapped[int] = mapped_column(Integer, index=True)
    client_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    session_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    # The RFC 5322 Message-ID, fixed at queue time: a retry after an unclear failure resends the
    # same message, which receiving systems can recognise as one.
    message_id: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default=PENDING)
    send_after: Mapped[datetime] = mapped_column(UtcDateTime)
    # Past this, the message is pointless (a reminder after the session started): withdrawn.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
