"""Queue, withdraw and deliver mail through the outbox table (core.mail.models).

Delivery is at least once and, as far as a sender can make it, never twice:

- a message is queued under a ``dedupe_key``; queuing the same key again is a no-op, so a
  handler that runs twice (the job runner's at-least-once) still queues one message;
- a worker claims a message (``pending`` -> ``sending``, one UPDATE that only one worker wins)
  before handing it to the transport, and marks it ``sent`` right after;
- only a worker that died between the server's "accepted" and that mark leaves a claim that
  expires and is sent again, with the same Message-ID (the window is one database write).

A server that is down or answers 4xx keeps the message waiting with growing pauses (capped),
until it is sent or its ``expires_at`` passes; a 5xx refusal fails it with the reason.
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core.crypto import KeyDestroyed, Owner
from core.jobs.policy import RetryPolicy
from core.mail.models import FAILED, PENDING, SENDING, SENT, WITHDRAWN, MailMessage
from core.mail.transport import MailTransport, PermanentMailError, TransientMailError
from core.redaction import describe_error
from core.store.db import Store

__all__ = [
    "Attachment",
    "DeliveryCounts",
    "Envelope",
    "MailPolicy",
    "deliver_due",
    "open_envelope",
    "queue_mail",
    "withdraw_mail",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str  # e.g. "text/calendar; method=REQUEST"
    data: bytes


@dataclass(frozen=True)
class Envelope:
    """Everything in a message that may identify someone: sealed as one encrypted value."""

    to: str
    subject: str
    text: str
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()

    def to_json(self) -> bytes:
        data = {
            "to": self.to,
            "subject": self.subject,
            "text": self.text,
            "html": self.html,
            "attachments": [
                {"filename": a.filename, "content_type": a.content_type, "data": base64.b64encode(a.data).decode()}
                for a in self.attachments
            ],
        }
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Envelope:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            to=data["to"],
            subject=data["subject"],
            text=data["text"],
            html=data.get("html"),
            attachments=tuple(
                Attachment(a["filename"], a["content_type"], base64.b64decode(a["data"]))
                for a in data.get("attachments", [])
            ),
        )


@dataclass(frozen=True)
class MailPolicy:
    """How delivery behaves; ``sender`` is the From line (a neutral name: never the therapy's nature)."""

    sender: str
    retry: RetryPolicy = field(default_factory=lambda: RetryPolicy(base=timedelta(minutes=1), cap=timedelta(hours=1)))
    claim_for: timedelta = timedelta(minutes=5)
    batch: int = 50


@dataclass
class DeliveryCounts:
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    withdrawn: int = 0


def _owner(therapist_id: int, client_id: int | None) -> tuple[Owner, Owner | None]:
    if client_id is None:
        return Owner("therapist", therapist_id), None
    return Owner("client", client_id), Owner("therapist", therapist_id)


def _context(dedupe_key: str) -> str:
    return f"mail.envelope|{dedupe_key}"


def queue_mail(
    store: Store,
    session: Session,
    *,
    dedupe_key: str,
    purpose: str,
    therapist_id: int,
    envelope: Envelope,
    send_after: datetime,
    client_id: int | None = None,
    session_id: int | None = None,
    expires_at: datetime | None = None,
    domain: str = "alliance.local",
) -> bool:
    """Queue a message in the caller's transaction; False when ``dedupe_key`` was queued before.

    A key withdrawn earlier is not queued again either: pick keys that change when the message
    should (a reminder's key names the start it reminds of).
    """
    if session.scalar(select(MailMessage.id).where(MailMessage.dedupe_key == dedupe_key)) is not None:
        return False
    owner, parent = _owner(therapist_id, client_id)
    cipher = store.keyring.cipher(session, owner, parent=parent)
    session.add(
        MailMessage(
            dedupe_key=dedupe_key,
            purpose=purpose,
            therapist_id=therapist_id,
            client_id=client_id,
            session_id=session_id,
            envelope=cipher.encrypt(envelope.to_json(), _context(dedupe_key)),
            message_id=make_msgid(domain=domain),
            status=PENDING,
            send_after=send_after,
            next_attempt_at=send_after,
            expires_at=expires_at,
        )
    )
    session.flush()
    return True


def withdraw_mail(session: Session, *, session_id: int, purposes: tuple[str, ...] | None = None) -> int:
    """Withdraw the session's messages that are still waiting (all, or those of ``purposes``)."""
    query = update(MailMessage).where(MailMessage.session_id == session_id, MailMessage.status == PENDING)
    if purposes is not None:
        query = query.where(MailMessage.purpose.in_(purposes))
    result = session.execute(query.values(status=WITHDRAWN, last_error="withdrawn"))
    return int(result.rowcount)  # type: ignore[attr-defined]


def _claim(store: Store, now: datetime, policy: MailPolicy) -> list[int]:
    """Claim due messages: pending ones whose time has come, and sending ones whose claim lapsed."""
    with store.session() as session:
        candidates = list(
            session.scalars(
                select(MailMessage.id)
                .where(MailMessage.status.in_((PENDING, SENDING)), MailMessage.next_attempt_at <= now)
                .order_by(MailMessage.next_attempt_at, MailMessage.id)
                .limit(policy.batch)
            )
        )
    claimed: list[int] = []
    for message_id in candidates:
        with store.session() as session:
            won = session.execute(
                update(MailMessage)
                .where(
                    MailMessage.id == message_id,
                    MailMessage.status.in_((PENDING, SENDING)),
                    MailMessage.next_attempt_at <= now,
                )
                .values(status=SENDING, next_attempt_at=now + policy.claim_for, attempts=MailMessage.attempts + 1)
            )
            if won.rowcount == 1:  # type: ignore[attr-defined]
                claimed.append(message_id)
    return claimed


def _finish(store: Store, message_id: int, **values: Any) -> None:
    with store.session() as session:
        session.execute(
            update(MailMessage).where(MailMessage.id == message_id, MailMessage.status == SENDING).values(**values)
        )


def _compose(row: MailMessage, envelope: Envelope, sender: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = envelope.to
    message["Subject"] = envelope.subject
    message["Message-ID"] = row.message_id
    message["Date"] = format_datetime(row.send_after.astimezone(UTC))
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies to us
    message.set_content(envelope.text)
    if envelope.html is not None:
        message.add_alternative(envelope.html, subtype="html")
    for attachment in envelope.attachments:
        maintype, _, rest = attachment.content_type.partition("/")
        subtype, *params = (p.strip() for p in rest.split(";"))
        extra = dict(p.split("=", 1) for p in params if "=" in p)
        message.add_attachment(
            attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename, params=extra
        )
    return message


def open_envelope(store: Store, session: Session, row: MailMessage) -> Envelope | None:
    """The decrypted envelope of a queued message; None when its owner's key was destroyed (erased)."""
    owner, _ = _owner(row.therapist_id, row.client_id)
    try:
        raw = store.keyring.decrypt(session, owner, row.envelope, _context(row.dedupe_key))
    except KeyDestroyed:
        return None
    return Envelope.from_json(raw)


def _open(store: Store, message_id: int) -> tuple[MailMessage, Envelope | None]:
    with store.session() as session:
        row = session.get(MailMessage, message_id)
        if row is None:  # pragma: no cover - claimed rows are never deleted
            raise LookupError(f"mail message {message_id} vanished")
        envelope = open_envelope(store, session, row)
        session.expunge(row)
        return row, envelope


def deliver_due(
    store: Store, transport: MailTransport, policy: MailPolicy, *, now: datetime | None = None
) -> DeliveryCounts:
    """Send every due message once through ``transport``; what happened, by outcome."""
    at = now or datetime.now(UTC)
    counts = DeliveryCounts()
    for message_id in _claim(store, at, policy):
        row, envelope = _open(store, message_id)
        where = {"mail_id": message_id, "purpose": row.purpose}
        if row.expires_at is not None and at >= row.expires_at:
            _finish(store, message_id, status=WITHDRAWN, last_error="expired before it could be sent")
            counts.withdrawn += 1
            continue
        if envelope is None:
            _finish(store, message_id, status=FAILED, last_error="the client's data was erased")
            counts.failed += 1
            continue
        try:
            transport.send(_compose(row, envelope, policy.sender))
        except PermanentMailError as exc:
            _finish(store, message_id, status=FAILED, last_error=describe_error(exc))
            log.warning("mail refused for good (%s)", describe_error(exc), extra=where)
            counts.failed += 1
            continue
        except (TransientMailError, OSError) as exc:
            retry_at = at + policy.retry.backoff(row.attempts)
            _finish(store, message_id, status=PENDING, next_attempt_at=retry_at, last_error=describe_error(exc))
            log.warning("mail deferred (%s); next try %s", describe_error(exc), retry_at.isoformat(), extra=where)
            counts.deferred += 1
            continue
        _finish(store, message_id, status=SENT, sent_at=at, last_error=None)
        log.info("mail sent", extra=where)
        counts.sent += 1
    return counts
