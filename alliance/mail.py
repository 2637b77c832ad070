"""Mail transports for the outbox (core.mail): SMTP, or .eml files when no server is configured.

The file transport is the development default (nothing leaves the machine): each message is
written to ``ALLIANCE_HOME/mail/<Message-ID>.eml`` with mode 0600, to open in any mail program.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from email.message import EmailMessage
from pathlib import Path

from alliance.settings import Settings
from core.mail import MailPolicy, MailTransport, PermanentMailError, TransientMailError

__all__ = ["FileTransport", "SmtpTransport", "build_transport", "mail_policy"]


class SmtpTransport:
    """One SMTP connection per message (messages are few; a server may drop idle connections)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.security = host, port, security
        self.username, self.password, self.timeout = username, password, timeout
        self.context = context or ssl.create_default_context()

    def _connect(self) -> smtplib.SMTP:
        if self.security == "ssl":
            return smtplib.SMTP_SSL(self.host, self.port, timeout=self.timeout, context=self.context)
        client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
        if self.security == "starttls":
            client.starttls(context=self.context)
        return client

    def send(self, message: EmailMessage) -> None:
        where = f"{self.host}:{self.port}"
        # The messages below never quote the server's text: it can repeat the recipient's address.
        try:
            with self._connect() as client:
                if self.username:
                    client.login(self.username, self.password or "")
                client.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = sorted({code for code, _ in exc.recipients.values()})
            if all(400 <= c < 500 for c in codes):
                raise TransientMailError(f"the mail server at {where} deferred the recipient ({codes})") from None
            raise PermanentMailError(f"the mail server at {where} refused the recipient ({codes})") from None
        except smtplib.SMTPAuthenticationError as exc:
            raise TransientMailError(f"the mail server at {where} refused the login ({exc.smtp_code})") from None
        except smtplib.SMTPResponseException as exc:
            if 400 <= exc.smtp_code < 500:
                raise TransientMailError(f"the mail server at {where} answered {exc.smtp_code}; later") from None
            raise PermanentMailError(f"the mail server at {where} refused the message ({exc.smtp_code})") from None
        except (smtplib.SMTPException, OSError) as exc:
            raise TransientMailError(f"could not reach the mail server at {where} ({type(exc).__name__})") from None


class FileTransport:
    """Writes each message as an .eml file (0600) instead of sending it."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        name = str(message["Message-ID"]).strip("<>").replace("/", "_") + ".eml"
        path = self.folder / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(message.as_bytes())


def build_transport(settings: Settings) -> MailTransport:
    """SMTP when ``ALLIANCE_SMTP_HOST`` is set, else files under ``ALLIANCE_HOME/mail``."""
    if settings.smtp_host:
        return SmtpTransport(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.smtp_security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            timeout=settings.smtp_timeout_seconds,
        )
    return FileTransport(settings.home / "mail")


def mail_policy(settings: Settings) -> MailPolicy:
    return MailPolicy(sender=settings.mail_from)
