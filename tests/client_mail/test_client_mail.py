"""Client e-mail end to end: calendar -> sessions -> outbox handlers -> a real SMTP server (aiosmtpd).

Sessions come from a memory calendar synced by the real engine and are assigned through
core.clients; the outbox runs through the real job registry (alliance.jobs); messages go through
the SMTP transport to aiosmtpd on loopback, where they are parsed (the .ics with icalendar).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import icalendar
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from alliance.jobs import client_mail_config
from alliance.mail import SmtpTransport, mail_policy
from alliance.settings import Settings
from core.client_mail import PURPOSES, sweep
from core.clients import assign_occurrence, create_client, find_occurrence, update_client
from core.links import link_url, live_tokens, revoke_link
from core.mail import PENDING, WITHDRAWN, MailMessage, deliver_due
from core.store import Store
from core.store.models import OutboxEvent
from core.sync import Status
from tests.core.test_mail import Inbox, _free_port
from tests.links.world import ZOOM, LinkWorld, make_settings

START = datetime(2030, 3, 5, 9, 0, tzinfo=UTC)  # 10:00 in Madrid
BASE = "https://alliance.test"
NAME = "Maria Lopez"
ADDRESS = "maria.lopez@example.org"
# Nothing in a client e-mail may say what the appointment is about or who it is for.
FORBIDDEN = re.compile(
    r"maria|lopez|therap|terap|psych|psic|diagnos|counsel|mental|online|en l[ií]nea|video|v[ií]deo|zoom|"
    r"in person|presencial|session|sesi[oó]n|K7Q2",
    re.IGNORECASE,
)

_LINK_TOKEN = re.compile(r"/c/[\w\-]+")


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, Controller]]:
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    try:
        yield inbox, controller
    finally:
        controller.stop()


class Practice:
    """A therapist, a calendar, the settings pointing at the SMTP server, and a clock for delivery."""

    def __init__(self, store: Store, home: Path, port: int, **extra: object) -> None:
        self.store = store
        self.world = LinkWorld(store)
        self.settings: Settings = make_settings(
            home, base_url=BASE, smtp_host="127.0.0.1", smtp_port=port, smtp_security="none", **extra
        )
        self.transport = SmtpTransport("127.0.0.1", port, security="none", timeout=5)

    def client(self, email: str | None = ADDRESS, name: str = NAME) -> str:
        return create_client(self.store, self.world.therapist, name=name, email=email, timezone="Europe/Madrid").code

    def assign(self, uid: str, start: datetime, code: str) -> int:
        session_id = self.world.session(uid, start, code)
        self.world.run_jobs(self.settings)
        return session_id

    def move(self, uid: str, start: datetime, **fields: object) -> None:
        self.world.put(uid, start, **fields)  # type: ignore[arg-type]
        self.world.sync()
        self.world.run_jobs(self.settings)

    def deliver(self, at: datetime) -> None:
        deliver_due(self.store, self.transport, mail_policy(self.settings), now=at)

    def link(self, session_id: int) -> str:
        token = live_tokens(self.store, self.world.therapist, [session_id])[session_id]
        return link_url(BASE, token)

    def pending(self, session_id: int) -> list[MailMessage]:
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(MailMessage)
                    .where(
                        MailMessage.session_id == session_id,
                        MailMessage.status == PENDING,
                        MailMessage.purpose.in_(PURPOSES),
                    )
                    .order_by(MailMessage.send_after)
                )
            )


def _ics(message: EmailMessage) -> icalendar.Component:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1, "an invitation carries exactly one .ics"
    assert parts[0].get_filename() == "invite.ics"
    cal = icalendar.Calendar.from_ical(parts[0].get_content())
    assert str(cal["METHOD"]) == "REQUEST"
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


def _subject(message: EmailMessage) -> str:
    # A long Subject is folded on the wire; a mail program shows it unfolded and trimmed.
    return " ".join(str(message["Subject"]).split())


def _body(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _assert_neutral(message: EmailMessage) -> None:
    """No name, diagnosis or word for the kind of care (the recipient's own address aside)."""
    assert not FORBIDDEN.search(str(message["Subject"])), message["Subject"]
    # The link's random token is left out: it can spell anything ("...tLOPEZk..." came up once).
    body = _LINK_TOKEN.sub("/c/<token>", _body(message))
    assert not FORBIDDEN.search(body), body
    assert not FORBIDDEN.search(str(message["From"]))
    for part in message.iter_attachments():
        text = part.get_content()
        text = (text if isinstance(text, str) else text.decode()).replace(f"mailto:{message['To']}", "")
        text = _LINK_TOKEN.sub("/c/<token>", text)
        assert not FORBIDDEN.search(text), text


def test_confirmation_reminders_and_rating_arrive_once_each(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    session_id = practice.assign("e1", START, practice.client())
    url = practice.link(session_id)

    practice.deliver(START - timedelta(days=3))
    assert len(inbox.messages) == 1
    confirmation = inbox.messages[0]
    assert confirmation["To"] == ADDRESS
    assert _subject(confirmation) == "Your appointment on Tuesday, 5 March 2030, 10:00 (Europe/Madrid)"
    assert url in _body(confirmation) and ZOOM not in confirmation.as_string()
    event = _ics(confirmation)
    assert event.decoded("dtstart") == START and event.decoded("dtend") == START + timedelta(minutes=50)
    assert str(event["URL"]) == url and url in str(event["DESCRIPTION"])
    assert str(event["SUMMARY"]) == "Appointment"
    assert int(event.decoded("sequence")) == 0
    _assert_neutral(confirmation)

    practice.deliver(START - timedelta(hours=24, minutes=1))
    assert len(inbox.messages) == 1, "the 24 h reminder waits for its time"
    practice.deliver(START - timedelta(hours=24))
    practice.deliver(START - timedelta(hours=1))
    practice.deliver(START - timedelta(minutes=30))  # nothing new: each goes once
    subjects = [_subject(m) for m in inbox.messages]
    assert subjects[1:] == ["Reminder: your appointment on Tuesday, 5 March 2030, 10:00 (Europe/Madrid)"] * 2
    assert all(url in _body(m) for m in inbox.messages)

    end = START + timedelta(minutes=50)
    practice.deliver(end + timedelta(minutes=4))
    assert len(inbox.messages) == 3, "the rating opens 5 minutes after the scheduled end"
    practice.deliver(end + timedelta(minutes=5))
    practice.deliver(end + timedelta(hours=1))
    assert len(inbox.messages) == 4
    rating = inbox.messages[3]
    assert _subject(rating) == "How was your appointment?" and url in _body(rating)
    for message in inbox.messages:
        _assert_neutral(message)
        assert message["From"] == practice.settings.mail_from
    # The handlers running again change nothing (at least once, never twice).
    practice.world.run_jobs(practice.settings)
    practice.deliver(end + timedelta(days=1))
    assert len(inbox.messages) == 4


def test_a_moved_session_gets_new_reminders_and_an_updated_invitation(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    session_id = practice.assign("e1", START, practice.client())
    practice.deliver(START - timedelta(days=3))
    assert len(inbox.messages) == 1
    assert [m.send_after for m in practice.pending(session_id)] == [
        START - timedelta(hours=24),
        START - timedelta(hours=1),
        START + timedelta(minutes=55),
    ]

    later = START + timedelta(days=2, hours=3)
    practice.move("e1", later)
    pending = practice.pending(session_id)
    assert [(m.purpose, m.send_after) for m in pending if m.purpose != "client.invitation"] == [
        ("client.reminder", later - timedelta(hours=24)),
        ("client.reminder", later - timedelta(hours=1)),
        ("client.rating", later + timedelta(minutes=55)),
    ]
    practice.deliver(START - timedelta(days=2))
    assert len(inbox.messages) == 2
    update = inbox.messages[1]
    assert _subject(update) == "Your appointment has moved to Thursday, 7 March 2030, 13:00 (Europe/Madrid)"
    event = _ics(update)
    assert event.decoded("dtstart") == later
    assert int(event.decoded("sequence")) > 0 and str(event["UID"]) == str(_ics(inbox.messages[0])["UID"])
    assert str(event["URL"]) == practice.link(session_id), "a moved session keeps its link"

    practice.deliver(START - timedelta(hours=1))  # the old reminder times: nothing
    assert len(inbox.messages) == 2
    practice.deliver(later - timedelta(hours=24))
    assert len(inbox.messages) == 3 and "Thursday, 7 March 2030, 13:00" in _subject(inbox.messages[2])
    for message in inbox.messages:
        _assert_neutral(message)


def _calendar(message: EmailMessage, method: str, filename: str) -> icalendar.Component:
    parts = [p for p in message.iter_attachments() if p.get_content_type() == "text/calendar"]
    assert len(parts) == 1 and parts[0].get_filename() == filename
    assert parts[0].get_param("method") == method
    cal = icalendar.Calendar.from_ical(parts[0].get_content())
    assert str(cal["METHOD"]) == method
    events = list(cal.walk("VEVENT"))
    assert len(events) == 1
    return events[0]


def test_a_cancelled_session_cancels_the_invitation_and_a_restored_one_is_invited_again(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    session_id = practice.assign("e1", START, practice.client())
    practice.deliver(START - timedelta(days=3))
    invitation = _ics(inbox.messages[0])
    practice.move("e1", START, status=Status.CANCELLED)
    assert [m.purpose for m in practice.pending(session_id)] == ["client.cancellation"]
    practice.deliver(START - timedelta(days=3) + timedelta(minutes=1))
    practice.world.run_jobs(practice.settings)  # again: nothing new (at least once, never twice)
    practice.deliver(START + timedelta(days=2))
    assert len(inbox.messages) == 2
    cancel = inbox.messages[1]
    assert _subject(cancel) == "Cancelled: your appointment on Tuesday, 5 March 2030, 10:00 (Europe/Madrid)"
    event = _calendar(cancel, "CANCEL", "cancel.ics")
    # The same UID with a higher SEQUENCE: the client's calendar program removes its entry.
    assert str(event["UID"]) == str(invitation["UID"])
    assert int(event.decoded("sequence")) > int(invitation.decoded("sequence"))
    assert str(event["STATUS"]) == "CANCELLED" and str(event["SUMMARY"]) == "Appointment"
    assert event.decoded("dtstart") == START
    assert practice.link(session_id) in _body(cancel)  # the page says so, with the contact line
    _assert_neutral(cancel)
    with store.session() as session:
        withdrawn = session.scalars(select(MailMessage.purpose).where(MailMessage.status == WITHDRAWN)).all()
    assert sorted(withdrawn) == ["client.rating", "client.reminder", "client.reminder"]

    # Restored (before the old time): the calendar entry was removed, so a new invitation goes
    # out with a SEQUENCE above the cancellation's, and the reminders return.
    restore_at = START - timedelta(days=2)
    practice.move("e1", START)
    assert [m.purpose for m in practice.pending(session_id)] == [
        "client.invitation",
        "client.reminder",
        "client.reminder",
        "client.rating",
    ]
    practice.deliver(restore_at)
    assert len(inbox.messages) == 3
    again = inbox.messages[2]
    assert _subject(again) == "Your appointment on Tuesday, 5 March 2030, 10:00 (Europe/Madrid)"
    event_again = _ics(again)
    assert str(event_again["UID"]) == str(invitation["UID"])
    assert int(event_again.decoded("sequence")) > int(event.decoded("sequence"))


def test_a_session_cancelled_again_before_its_new_invitation_went_out_is_not_cancelled_twice(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    session_id = practice.assign("e1", START, practice.client())
    practice.deliver(START - timedelta(days=3))
    practice.move("e1", START, status=Status.CANCELLED)
    practice.deliver(START - timedelta(days=3) + timedelta(minutes=1))
    assert [_subject(m).startswith("Cancelled") for m in inbox.messages] == [False, True]
    practice.move("e1", START)  # restored: a new invitation waits...
    practice.move("e1", START, status=Status.CANCELLED)  # ...and is withdrawn before it went out
    assert practice.pending(session_id) == []
    practice.deliver(START - timedelta(days=2))
    assert len(inbox.messages) == 2  # the client's calendar lost the session once, and was told once

    # Restored again and this time invited: its cancellation goes out, as the calendar holds it again.
    practice.move("e1", START)
    practice.deliver(START - timedelta(days=2) + timedelta(minutes=1))
    practice.move("e1", START, status=Status.CANCELLED)
    practice.deliver(START - timedelta(days=2) + timedelta(minutes=2))
    assert [_subject(m).startswith("Cancelled") for m in inbox.messages] == [False, True, False, True]


def test_a_session_cancelled_before_its_invitation_went_out_sends_nothing(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    session_id = practice.assign("e1", START, practice.client())
    practice.move("e1", START, status=Status.CANCELLED)  # the confirmation still waited
    assert practice.pending(session_id) == []
    practice.deliver(START - timedelta(days=1))
    assert inbox.messages == []


def test_a_spanish_client_gets_spanish_mail_in_a_practice_that_writes_english(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    code = create_client(
        store, practice.world.therapist, name=NAME, email=ADDRESS, timezone="Europe/Madrid", language="es"
    ).code
    other = practice.client(email="j.ruiz@example.net", name="Jorge Ruiz")
    spanish = practice.assign("e1", START, code)
    practice.assign("e2", START + timedelta(hours=2), other)
    practice.deliver(START - timedelta(days=3))
    subjects = {m["To"]: _subject(m) for m in inbox.messages}
    assert subjects == {
        ADDRESS: "Tu cita del martes, 5 de marzo de 2030, 10:00 (Europe/Madrid)",
        "j.ruiz@example.net": "Your appointment on Tuesday, 5 March 2030, 12:00 (Europe/Madrid)",
    }
    assert str(_ics(next(m for m in inbox.messages if m["To"] == ADDRESS))["SUMMARY"]) == "Cita"
    practice.move("e1", START, status=Status.CANCELLED)
    practice.deliver(START - timedelta(days=2))
    cancel = inbox.messages[-1]
    assert _subject(cancel) == "Cancelada: tu cita del martes, 5 de marzo de 2030, 10:00 (Europe/Madrid)"
    assert str(_calendar(cancel, "CANCEL", "cancel.ics")["SUMMARY"]) == "Cita"
    assert practice.pending(spanish) == []
    for message in inbox.messages:
        _assert_neutral(message)


def test_an_in_person_session_gets_its_mail_without_a_promise_to_join(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    code = create_client(
        store, practice.world.therapist, name=NAME, email=ADDRESS, timezone="Europe/Madrid", modality="in_person"
    ).code
    session_id = practice.assign("e1", START, code)
    end = START + timedelta(minutes=50)
    for at in (
        START - timedelta(days=3),
        START - timedelta(hours=24),
        START - timedelta(hours=1),
        end + timedelta(minutes=5),
    ):
        practice.deliver(at)
    subjects = [_subject(m).split(" on ")[0] for m in inbox.messages]
    # The rating is asked for every session; confirmation and reminders carry the page, not a call.
    assert subjects == [
        "Your appointment",
        "Reminder: your appointment",
        "Reminder: your appointment",
        "How was your appointment?",
    ]
    for message in inbox.messages[:3]:
        assert "how to join" not in _body(message) and "The details are on your page:" in _body(message)
        assert practice.link(session_id) in _body(message)
    for message in inbox.messages:
        _assert_neutral(message)


def test_a_session_given_to_another_client_withdraws_the_first_clients_mail(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    first = practice.client()
    second = practice.client(email="j.ruiz@example.net", name="Jorge Ruiz")
    session_id = practice.assign("e1", START, first)
    first_link = practice.link(session_id)
    occurrence_id = find_occurrence(store, practice.world.therapist, "e1", START)
    assign_occurrence(store, practice.world.therapist, occurrence_id, second)
    practice.world.run_jobs(practice.settings)
    pending = practice.pending(session_id)
    assert {m.client_id for m in pending} != set() and len({m.client_id for m in pending}) == 1
    for at in (
        START - timedelta(days=2),
        START - timedelta(hours=24),
        START - timedelta(hours=1),
        START + timedelta(hours=1),
    ):
        practice.deliver(at)
    assert "j.ruiz@example.net" in {m["To"] for m in inbox.messages}
    to_first = [m for m in inbox.messages if m["To"] == ADDRESS]
    # The first client's confirmation may have gone out before the change; nothing after it.
    assert all(_subject(m).startswith("Your appointment on") for m in to_first) and len(to_first) <= 1
    to_second = [m for m in inbox.messages if m["To"] == "j.ruiz@example.net"]
    assert [_subject(m).split(":")[0].split(" on ")[0] for m in to_second] == [
        "Your appointment",
        "Reminder",
        "Reminder",
        "How was your appointment?",
    ]
    second_link = practice.link(session_id)
    assert second_link != first_link and all(second_link in _body(m) for m in to_second)
    assert all(first_link not in m.as_string() for m in to_second)


def test_a_session_handed_to_another_client_cancels_the_first_clients_invitation(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    first = create_client(
        store, practice.world.therapist, name=NAME, email=ADDRESS, timezone="Europe/Madrid", language="es"
    ).code
    second = practice.client(email="j.ruiz@example.net", name="Jorge Ruiz")
    session_id = practice.assign("e1", START, first)
    first_link = practice.link(session_id)
    practice.deliver(START - timedelta(days=3))  # the first client's calendar now holds the appointment
    invitation = _ics(inbox.messages[0])

    occurrence_id = find_occurrence(store, practice.world.therapist, "e1", START)
    assign_occurrence(store, practice.world.therapist, occurrence_id, second)
    practice.world.run_jobs(practice.settings)
    practice.world.run_jobs(practice.settings)  # again: nothing new (at least once, never twice)
    for at in (START - timedelta(days=2), START - timedelta(hours=1), START + timedelta(hours=1)):
        practice.deliver(at)

    to_first = [m for m in inbox.messages if m["To"] == ADDRESS][1:]
    assert len(to_first) == 1, "one cancellation, then no reminder or rating e-mail"
    cancel = to_first[0]
    # In the first client's own language; nothing names either client.
    assert _subject(cancel) == "Cancelada: tu cita del martes, 5 de marzo de 2030, 10:00 (Europe/Madrid)"
    event = _calendar(cancel, "CANCEL", "cancel.ics")
    assert str(event["UID"]) == str(invitation["UID"])
    assert int(event.decoded("sequence")) > int(invitation.decoded("sequence"))
    assert str(event["STATUS"]) == "CANCELLED" and str(event["SUMMARY"]) == "Cita"
    assert str(event["ATTENDEE"]) == f"mailto:{ADDRESS}"
    assert first_link not in cancel.as_string(), "the first client's link is dead: not offered"
    _assert_neutral(cancel)
    assert not re.search("jorge|ruiz", cancel.as_string(), re.IGNORECASE)

    to_second = [m for m in inbox.messages if m["To"] == "j.ruiz@example.net"]
    assert [_subject(m).split(" on ")[0] for m in to_second] == [
        "Your appointment",
        "Reminder: your appointment",
        "Reminder: your appointment",
        "How was your appointment?",
    ]
    welcome = _ics(to_second[0])
    assert str(welcome["UID"]) == str(invitation["UID"])
    assert int(welcome.decoded("sequence")) > int(event.decoded("sequence"))
    assert str(welcome["URL"]) == practice.link(session_id) != first_link
    for message in to_second:
        assert ADDRESS not in message.as_string() and not re.search("maria|lopez", message.as_string(), re.I)


def test_no_rating_mail_for_a_no_show_and_an_early_one_for_a_real_end(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    code = practice.client()
    no_show = practice.assign("e1", START, code)
    real = practice.assign("e2", START + timedelta(days=7), code)
    short = practice.assign("e3", START + timedelta(days=14), code)

    def ended(session_id: int, **payload: object) -> None:
        with store.session() as session:
            session.add(
                OutboxEvent(
                    kind="session.ended",
                    therapist_id=practice.world.therapist,
                    connection_id=practice.world.connection,
                    payload={"session_id": session_id, **payload},
                )
            )

    real_start = START + timedelta(days=7)
    ended(no_show, ended_at=(START + timedelta(minutes=15)).isoformat(), no_show=True)
    ended(real, started_at=real_start.isoformat(), ended_at=(real_start + timedelta(minutes=40)).isoformat())
    short_start = START + timedelta(days=14)
    ended(short, started_at=short_start.isoformat(), ended_at=(short_start + timedelta(minutes=6)).isoformat())
    practice.world.run_jobs(practice.settings)

    for silent in (no_show, short):
        assert [m.purpose for m in practice.pending(silent) if m.purpose != "client.invitation"] == [
            "client.reminder",
            "client.reminder",
        ]
    rating = [m for m in practice.pending(real) if m.purpose == "client.rating"]
    assert [m.send_after for m in rating] == [real_start + timedelta(minutes=40)]
    practice.deliver(real_start + timedelta(minutes=40))
    assert sum(_subject(m) == "How was your appointment?" for m in inbox.messages) == 1


def test_spanish_practice_and_clients_without_an_address(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port, client_mail_language="es", reminder_hours="48")
    silent = practice.assign("e0", START, practice.client(email=None))
    assert practice.pending(silent) == []
    session_id = practice.assign("e1", START, practice.client())
    reminders = [m.send_after for m in practice.pending(session_id) if m.purpose == "client.reminder"]
    assert reminders == [START - timedelta(hours=48)]
    practice.deliver(START - timedelta(hours=48))
    subjects = [_subject(m) for m in inbox.messages]
    assert subjects == [
        "Tu cita del martes, 5 de marzo de 2030, 10:00 (Europe/Madrid)",
        "Recordatorio: tu cita del martes, 5 de marzo de 2030, 10:00 (Europe/Madrid)",
    ]
    assert str(_ics(inbox.messages[0])["SUMMARY"]) == "Cita"
    for message in inbox.messages:
        _assert_neutral(message)


def test_a_revoked_link_or_a_changed_address_withdraws_what_waits(
    store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]
) -> None:
    inbox, controller = smtp
    practice = Practice(store, tmp_path, controller.port)
    code = practice.client()
    session_id = practice.assign("e1", START, code)
    config = client_mail_config(practice.settings)
    # No event says an address changed: the sweep re-checks what is about to go out.
    update_client(store, practice.world.therapist, code, email="maria.new@example.org")
    sweep(store, config, lookahead=timedelta(minutes=10), now=START - timedelta(hours=24, minutes=5))
    practice.deliver(START - timedelta(hours=24))
    reminders = [m["To"] for m in inbox.messages if _subject(m).startswith("Reminder")]
    assert reminders == ["maria.new@example.org"]
    new_confirmation = [m for m in inbox.messages if m["To"] == "maria.new@example.org" and "on" in _subject(m)]
    assert len(new_confirmation) == 2  # a confirmation to the new address, then the reminder

    revoke_link(store, practice.world.therapist, session_id)
    sweep(store, config, lookahead=timedelta(minutes=10), now=START - timedelta(hours=1, minutes=5))
    assert practice.pending(session_id) == []
    practice.deliver(START + timedelta(days=1))
    assert [m["To"] for m in inbox.messages if _subject(m).startswith("Reminder")] == reminders


def test_smtp_down_the_mail_waits_and_goes_once(store: Store, tmp_path: Path, smtp: tuple[Inbox, Controller]) -> None:
    inbox, controller = smtp
    port = _free_port()  # nothing listens here
    practice = Practice(store, tmp_path, port)
    session_id = practice.assign("e1", START, practice.client())
    practice.deliver(START - timedelta(days=3))
    assert inbox.messages == []
    assert [m.purpose for m in practice.pending(session_id)][:1] == ["client.invitation"]
    practice.transport = SmtpTransport("127.0.0.1", controller.port, security="none", timeout=5)
    practice.deliver(START - timedelta(days=2))
    practice.deliver(START - timedelta(days=2))
    assert [_subject(m)[:16] for m in inbox.messages] == ["Your appointment"]


def test_reminder_hours_setting_is_checked(tmp_path: Path) -> None:
    assert client_mail_config(make_settings(tmp_path, reminder_hours="1, 24,24")).plan.reminder_hours == (24, 1)
    with pytest.raises(ValueError, match="reminder hours"):
        make_settings(tmp_path, reminder_hours="24,soon")
