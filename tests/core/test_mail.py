"""The mail outbox against a real SMTP server on loopback (aiosmtpd), on both databases."""

from __future__ import annotations

import email
import email.policy
import logging
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import icalendar
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from alliance.mail import SmtpTransport
from core.crypto import Owner
from core.mail import (
    FAILED,
    PENDING,
    SENT,
    WITHDRAWN,
    Attachment,
    Envelope,
    MailMessage,
    MailPolicy,
    deliver_due,
    queue_mail,
    withdraw_mail,
)
from core.mirror import ensure_therapist
from core.store import Store
from tests.core.test_privacy_at_rest import _raw_dump

T0 = datetime(2030, 3, 4, 9, 0, tzinfo=UTC)
CLIENT_ADDRESS = "maria.lopez@example.org"
POLICY = MailPolicy(sender="Appointments <appointments@practice.test>")


@dataclass
class Inbox:
    """What the SMTP server received, and how it answers the next RCPT."""

    messages: list[EmailMessage] = field(default_factory=list)
    rcpt_reply: str = "250 OK"

    async def handle_RCPT(
        self, server: object, session: object, envelope: object, address: str, options: object
    ) -> str:
        if self.rcpt_reply.startswith("250"):
            envelope.rcpt_tos.append(address)  # type: ignore[attr-defined]
        return self.rcpt_reply

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        raw = envelope.content  # type: ignore[attr-defined]
        self.messages.append(email.message_from_bytes(raw, policy=email.policy.default))  # type: ignore[arg-type]
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller
    finally:
        controller.stop()


def _transport(controller: Controller) -> SmtpTransport:
    return SmtpTransport("127.0.0.1", controller.port, security="none", timeout=5)


def _invite() -> bytes:
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Alliance tests//EN")
    cal.add("version", "2.0")
    event = icalendar.Event()
    event.add("uid", "session-1@alliance.test")
    event.add("dtstart", T0 + timedelta(days=1))
    event.add("dtend", T0 + timedelta(days=1, minutes=50))
    event.add("summary", "Appointment")
    cal.add_component(event)
    return cal.to_ical()


def _envelope(**overrides: object) -> Envelope:
    values: dict[str, object] = {
        "to": CLIENT_ADDRESS,
        "subject": "Your appointment on 5 March",
        "text": "Hello Maria, your link: https://alliance.test/c/abc",
        "attachments": (Attachment("invite.ics", "text/calendar; method=REQUEST", _invite()),),
    }
    values.update(overrides)
    return Envelope(**values)  # type: ignore[arg-type]


def _queue(store: Store, therapist: int, key: str, *, client_id: int | None = None, **kw: object) -> bool:
    with store.session() as session:
        return queue_mail(
            store,
            session,
            dedupe_key=key,
            purpose=str(kw.pop("purpose", "confirmation")),
            therapist_id=therapist,
            client_id=client_id,
            envelope=kw.pop("envelope", _envelope()),  # type: ignore[arg-type]
            send_after=kw.pop("send_after", T0),  # type: ignore[arg-type]
            **kw,  # type: ignore[arg-type]
        )


def _status(store: Store) -> dict[str, tuple[str, int]]:
    with store.session() as session:
        return {m.dedupe_key: (m.status, m.attempts) for m in session.scalars(select(MailMessage))}


def test_a_queued_message_arrives_once_with_its_invitation(store: Store, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    assert _queue(store, therapist, "confirm:1", session_id=1)
    assert not _queue(store, therapist, "confirm:1", session_id=1)  # the same key twice: one message
    early = deliver_due(store, _transport(controller), POLICY, now=T0 - timedelta(minutes=1))
    assert early.sent == 0 and inbox.messages == []  # not before send_after
    counts = deliver_due(store, _transport(controller), POLICY, now=T0)
    assert counts.sent == 1
    assert deliver_due(store, _transport(controller), POLICY, now=T0 + timedelta(hours=1)).sent == 0
    (message,) = inbox.messages
    assert message["To"] == CLIENT_ADDRESS and message["Subject"] == "Your appointment on 5 March"
    assert message["From"] == "Appointments <appointments@practice.test>" and message["Message-ID"]
    assert "your link" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    (invite,) = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert invite.get_param("method") == "REQUEST"
    event = icalendar.Calendar.from_ical(invite.get_content()).walk("VEVENT")[0]
    assert event["uid"] == "session-1@alliance.test" and event.decoded("dtstart") == T0 + timedelta(days=1)
    assert _status(store) == {"confirm:1": (SENT, 1)}


def test_a_server_that_is_down_defers_and_the_message_goes_when_it_is_back(
    store: Store, smtp: tuple[Inbox, Controller], caplog: pytest.LogCaptureFixture
) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    _queue(store, therapist, "confirm:2")
    down = SmtpTransport("127.0.0.1", _free_port(), security="none", timeout=2)  # nobody listens there
    with caplog.at_level(logging.INFO):
        first = deliver_due(store, down, POLICY, now=T0)
        second = deliver_due(store, down, POLICY, now=T0 + timedelta(seconds=1))  # backing off: not due yet
    assert (first.deferred, second.deferred) == (1, 0)
    with store.session() as session:
        row = session.scalars(select(MailMessage)).one()
        assert row.status == PENDING and row.last_error and "could not reach" in row.last_error
        retry_at = row.next_attempt_at
    assert CLIENT_ADDRESS not in caplog.text and "Maria" not in caplog.text
    assert deliver_due(store, _transport(controller), POLICY, now=retry_at).sent == 1
    assert len(inbox.messages) == 1 and _status(store)["confirm:2"] == (SENT, 2)


def test_a_refused_recipient_fails_a_busy_one_waits(store: Store, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    _queue(store, therapist, "busy")
    inbox.rcpt_reply = "451 4.3.0 try again later"
    assert deliver_due(store, _transport(controller), POLICY, now=T0).deferred == 1
    _queue(store, therapist, "refused", send_after=T0 + timedelta(hours=5))
    inbox.rcpt_reply = "550 5.1.1 no such user"
    later = deliver_due(store, _transport(controller), POLICY, now=T0 + timedelta(hours=5))
    assert later.failed == 2  # both were due by then, and the server now refuses the address for good
    with store.session() as session:
        errors = {m.dedupe_key: m.last_error for m in session.scalars(select(MailMessage))}
    assert all(e and "refused the recipient" in e and CLIENT_ADDRESS not in e for e in errors.values())
    assert inbox.messages == []


def test_withdrawn_and_expired_messages_are_never_sent(store: Store, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    _queue(store, therapist, "reminder:24h:7", session_id=7, purpose="reminder", send_after=T0)
    _queue(store, therapist, "reminder:1h:7", session_id=7, purpose="reminder", send_after=T0 + timedelta(hours=23))
    _queue(store, therapist, "confirm:7", session_id=7, send_after=T0 + timedelta(hours=23))
    _queue(store, therapist, "late", expires_at=T0 - timedelta(minutes=1))
    with store.session() as session:
        assert withdraw_mail(session, session_id=7, purposes=("reminder",)) == 2
    counts = deliver_due(store, _transport(controller), POLICY, now=T0 + timedelta(days=1))
    assert (counts.sent, counts.withdrawn) == (1, 1)
    assert [m["Subject"] for m in inbox.messages] == ["Your appointment on 5 March"]
    assert {k: s for k, (s, _) in _status(store).items()} == {
        "reminder:24h:7": WITHDRAWN,
        "reminder:1h:7": WITHDRAWN,
        "confirm:7": SENT,
        "late": WITHDRAWN,
    }


def test_two_workers_never_send_one_message_twice(store: Store, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    for i in range(20):
        _queue(store, therapist, f"bulk:{i}", envelope=_envelope(subject=f"Message {i}"))
    barrier = threading.Barrier(2)

    def worker() -> None:
        barrier.wait()
        deliver_due(store, _transport(controller), POLICY, now=T0)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    subjects = sorted(m["Subject"] for m in inbox.messages)
    assert subjects == sorted(f"Message {i}" for i in range(20))


def test_erasing_the_client_key_fails_their_queued_mail_and_nothing_is_readable_at_rest(
    store: Store, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    therapist = ensure_therapist(store, "t@practice.test")
    _queue(store, therapist, "client:1", client_id=101)
    _queue(store, therapist, "client:2", client_id=202, envelope=_envelope(to="other@example.org"))
    dump = _raw_dump(store)
    assert CLIENT_ADDRESS.encode() not in dump and b"your link" not in dump and b"5 March" not in dump
    with store.session() as session:
        assert store.keyring.destroy(session, Owner("client", 101))
    counts = deliver_due(store, _transport(controller), POLICY, now=T0)
    assert (counts.sent, counts.failed) == (1, 1)
    assert [m["To"] for m in inbox.messages] == ["other@example.org"]
    assert _status(store)["client:1"][0] == FAILED
