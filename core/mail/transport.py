"""What the mail outbox needs from a way of sending mail (SMTP, files in development)."""

from __future__ import annotations

from email.message import EmailMessage
from typing import Protocol


class MailTransport(Protocol):
    """Hands one message over; raises :class:`TransientMailError` or :class:`PermanentMailError`."""

    def send(self, message: EmailMessage) -> None: ...


class TransientMailError(Exception):
    """Try again later: the server is down, busy or answered 4xx. The message waits in the outbox."""


class PermanentMailError(Exception):
    """Trying again will not help (5xx: unknown recipient, refused sender): the message fails."""
