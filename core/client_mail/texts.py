"""The words of client e-mails, in English and Spanish, and the .ics invitation.

Privacy (reference/clinical.md, F): subjects and bodies say "appointment" and a time, nothing
else. No client name (a shared inbox or a lock-screen preview shows it), no diagnosis, no word
for the kind of care or how it is delivered, no therapist notes. The Spanish matches the client
pages (informal "tú").
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parseaddr
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar
from babel.dates import format_datetime

__all__ = ["LANGUAGES", "Rendered", "cancellation_ics", "invitation_ics", "local_time", "render"]

LANGUAGES = ("en", "es")

_TEXT: dict[str, dict[str, str]] = {
    "en": {
        "subject.confirmation": "Your appointment on {when}",
        "subject.update": "Your appointment has moved to {when}",
        "subject.reminder": "Reminder: your appointment on {when}",
        "subject.rating": "How was your appointment?",
        "subject.cancellation": "Cancelled: your appointment on {when}",
        "hello": "Hello,",
        "body.confirmation": "your appointment is on {when}.",
        "body.update": "your appointment has moved. The new time is {when}.",
        "body.reminder": "a reminder: your appointment is on {when}.",
        "body.cancellation": "your appointment on {when} is cancelled.",
        "body.link": "Everything you need, including how to join, is on your page:",
        "body.link.in_person": "The details are on your page:",
        "body.link.cancellation": "If you have questions, your page says how to get in touch:",
        "body.nolink.cancellation": "If you have questions, please get in touch with us.",
        "body.ics.cancellation": "The attached update removes the appointment from your calendar.",
        "body.ics": "The attached invitation adds the appointment to your calendar.",
        "body.rating": "thank you for today. Two minutes of feedback help us get the next appointment right:",
        "body.footer": "This link is personal; please do not forward this e-mail.",
        "summary": "Appointment",
        "link": "Open your page",
    },
    "es": {
        "subject.confirmation": "Tu cita del {when}",
        "subject.update": "Tu cita ha cambiado al {when}",
        "subject.reminder": "Recordatorio: tu cita del {when}",
        "subject.rating": "¿Qué tal fue tu cita?",
        "subject.cancellation": "Cancelada: tu cita del {when}",
        "hello": "Hola:",
        "body.confirmation": "tu cita es el {when}.",
        "body.update": "tu cita ha cambiado. La nueva hora es el {when}.",
        "body.reminder": "te recordamos tu cita del {when}.",
        "body.cancellation": "tu cita del {when} se ha cancelado.",
        "body.link": "Todo lo que necesitas, también cómo conectarte, está en tu página:",
        "body.link.in_person": "Los detalles están en tu página:",
        "body.link.cancellation": "Si tienes preguntas, tu página indica cómo ponerte en contacto:",
        "body.nolink.cancellation": "Si tienes preguntas, ponte en contacto con nosotros.",
        "body.ics.cancellation": "La actualización adjunta quita la cita de tu calendario.",
        "body.ics": "La invitación adjunta añade la cita a tu calendario.",
        "body.rating": "gracias por hoy. Dos minutos de tu opinión nos ayudan a preparar bien la próxima cita:",
        "body.footer": "Este enlace es personal; por favor, no reenvíes este correo.",
        "summary": "Cita",
        "link": "Abrir tu página",
    },
}


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str
    text: str
    html: str


def _zone(name: str | None) -> ZoneInfo:
    try:
        return ZoneInfo(name) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def local_time(at: datetime, zone: str | None, language: str, *, all_day: bool = False) -> str:
    """E.g. "Tuesday, 5 March 2030, 10:00 (Europe/Madrid)" / "martes, 5 de marzo de 2030, 10:00 (...)"."""
    tz = _zone(zone)
    local = at.astimezone(tz)
    if all_day:
        return format_datetime(
            local, "EEEE, d MMMM y" if language == "en" else "EEEE, d 'de' MMMM 'de' y", locale=language
        )
    pattern = "EEEE, d MMMM y, HH:mm" if language == "en" else "EEEE, d 'de' MMMM 'de' y, HH:mm"
    return f"{format_datetime(local, pattern, tzinfo=tz, locale=language)} ({tz.key})"


def render(
    message: str, *, language: str, when: str, url: str | None, with_ics: bool, in_person: bool = False
) -> Rendered:
    """One message (``confirmation``, ``update``, ``reminder``, ``rating``, ``cancellation``) in ``language``.

    ``in_person``: the session has no call to join, so the link line does not promise one (the
    words stay neutral: nothing says how the appointment takes place). ``url`` None (only for a
    cancellation): the recipient has no page any more (the session went to another client).
    """
    words = _TEXT[language if language in _TEXT else "en"]
    subject = words[f"subject.{message}"].format(when=when)
    lead = words[f"body.{message}"].format(when=when)
    paragraphs = [words["hello"], lead]
    if message == "cancellation":
        paragraphs.append(words["body.link.cancellation" if url else "body.nolink.cancellation"])
    elif message != "rating":
        paragraphs.append(words["body.link.in_person" if in_person else "body.link"])
    ics_line = words["body.ics.cancellation" if message == "cancellation" else "body.ics"]
    text_parts = [*paragraphs, url] if url else paragraphs[:]
    if with_ics:
        text_parts.append(ics_line)
    text_parts.append(words["body.footer"])
    text = "\n\n".join(text_parts) + "\n"
    esc = html.escape
    body = "".join(f"<p>{esc(p)}</p>" for p in paragraphs)
    if url:
        body += f'<p><a href="{esc(url, quote=True)}">{esc(words["link"])}</a></p>'
    if with_ics:
        body += f"<p>{esc(ics_line)}</p>"
    body += f"<p><small>{esc(words['body.footer'])}</small></p>"
    page = f'<!doctype html><html lang="{language}"><body>{body}</body></html>'
    return Rendered(subject=subject, text=text, html=page)


def _itip(
    method: str, *, uid: str, sequence: int, start: datetime, end: datetime, language: str, stamp: datetime
) -> tuple[icalendar.Calendar, icalendar.Event]:
    """The calendar and event every iTIP message here starts with: identity, UTC times, neutral title."""
    words = _TEXT[language if language in _TEXT else "en"]
    cal = icalendar.Calendar()
    cal.add("prodid", "-//Alliance//client mail//EN")
    cal.add("version", "2.0")
    cal.add("method", method)
    event = icalendar.Event()
    event.add("uid", uid)
    event.add("sequence", sequence)
    event.add("dtstamp", stamp.astimezone(UTC))
    event.add("dtstart", start.astimezone(UTC))
    event.add("dtend", end.astimezone(UTC))
    event.add("summary", words["summary"])
    return cal, event


def _add_organizer(event: icalendar.Event, organizer: str) -> None:
    _, address = parseaddr(organizer)
    event.add("organizer", icalendar.vCalAddress(f"mailto:{address or 'noreply@localhost'}"))


def invitation_ics(
    *,
    uid: str,
    sequence: int,
    start: datetime,
    end: datetime,
    url: str,
    organizer: str,
    attendee: str,
    language: str,
    stamp: datetime,
) -> bytes:
    """An iTIP REQUEST (RFC 5546) for one appointment: UTC times, the client link, a neutral title."""
    cal, event = _itip("REQUEST", uid=uid, sequence=sequence, start=start, end=end, language=language, stamp=stamp)
    event.add("description", url)
    event.add("url", url)
    event.add("status", "CONFIRMED")
    event.add("transp", "OPAQUE")
    _add_organizer(event, organizer)
    guest = icalendar.vCalAddress(f"mailto:{attendee}")
    guest.params["ROLE"] = icalendar.vText("REQ-PARTICIPANT")
    guest.params["RSVP"] = icalendar.vText("FALSE")
    event.add("attendee", guest)
    cal.add_component(event)
    return bytes(cal.to_ical())


def cancellation_ics(
    *,
    uid: str,
    sequence: int,
    start: datetime,
    end: datetime,
    organizer: str,
    attendee: str,
    language: str,
    stamp: datetime,
) -> bytes:
    """An iTIP CANCEL (RFC 5546, 3.2.5) of the invitation with this UID: a higher SEQUENCE,
    ``STATUS:CANCELLED``, the same neutral title and no link."""
    cal, event = _itip("CANCEL", uid=uid, sequence=sequence, start=start, end=end, language=language, stamp=stamp)
    event.add("status", "CANCELLED")
    _add_organizer(event, organizer)
    event.add("attendee", icalendar.vCalAddress(f"mailto:{attendee}"))
    cal.add_component(event)
    return bytes(cal.to_ical())
