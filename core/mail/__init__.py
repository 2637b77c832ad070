"""Outgoing mail: an encrypted outbox of messages, delivered at least once and never twice by design.

Queue with :func:`queue_mail` in the transaction of what caused the message; a worker runs
:func:`deliver_due` with a :class:`MailTransport` (SMTP in production, files in development).
"""

from core.mail.models import FAILED, PENDING, SENDING, SENT, WITHDRAWN, MailMessage
from core.mail.service import (
    Attachment,
    DeliveryCounts,
    Envelope,
    MailPolicy,
    deliver_due,
    open_envelope,
    queue_mail,
    withdraw_mail,
)
from core.mail.transport import MailTransport, PermanentMailError, TransientMailError

__all__ = [
    "FAILED",
    "PENDING",
    "SENDING",
    "SENT",
    "WITHDRAWN",
    "Attachment",
    "DeliveryCounts",
    "Envelope",
    "MailMessage",
    "MailPolicy",
    "MailTransport",
    "PermanentMailError",
    "TransientMailError",
    "deliver_due",
    "open_envelope",
    "queue_mail",
    "withdraw_mail",
]
