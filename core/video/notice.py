"""Telling the therapist that an online session has no video link (never a silent gap).

Outbox consumer of ``video.link_missing`` (``core.video.service``): one e-mail to the therapist
per session and reason, with a neutral subject (it may show on a lock screen or a shared inbox:
no client, no diagnosis, not even "therapy"). The body gives the session's time in the
therapist's zone, what went wrong, and the command that tries again; it names no client either
(the therapist knows their own calendar; the mail may be forwarded or read over a shoulder).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.clients.models import TherapySession
from core.mail import Envelope, queue_mail
from core.store import Store
from core.store.models import Connection, Occurrence, Therapist

__all__ = ["PURPOSE", "SUBJECT", "tell_link_missing"]

log = logging.getLogger(__name__)

PURPOSE = "video_link_missing"
SUBJECT = "A session has no video link"

# What the therapist reads for each reason code, and what they can do about it.
_REASONS: dict[str, tuple[str, str]] = {
    "no_connection": (
        "No Zoom account is connected, so no meeting could be created.",
        "Connect one with 'alliance connect zoom'; waiting sessions then get their meetings.",
    ),
    "needs_reconnect": (
        "Zoom no longer accepts this practice's sign-in (the access was revoked or expired).",
        "Connect Zoom again with 'alliance connect zoom'; waiting sessions then get their meetings.",
    ),
    "budget": (
        "Zoom allows 100 meetings to be created or changed per host and day, and today's are used up; "
        "the next ones can only be made after midnight UTC, after this session begins.",
        "Add a video link to the calendar event yourself, "
        "or run 'alliance video retry {session_id}' after midnight UTC.",
    ),
    "gave_up": (
        "Zoom kept refusing or failing to create the meeting, and Alliance stopped trying.",
        "Run 'alliance video retry {session_id}' to try again, or add a video link to the calendar event.",
    ),
    "deleted_outside": (
        "The Zoom meeting of this session was deleted in Zoom.",
        "Run 'alliance video retry {session_id}' for a new meeting, or add a video link to the calendar event.",
    ),
}
_UNKNOWN = ("No video meeting could be made.", "Run 'alliance video retry {session_id}' to try again.")


def _when(start: datetime, zone: str) -> str:
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz, zone = ZoneInfo("UTC"), "UTC"
    local = start.astimezone(tz)
    return f"{local:%A %d %B %Y, %H:%M} ({zone})"


def _facts(session: Session, session_id: int) -> tuple[int, str, str, datetime] | None:
    found = session.execute(
        select(Therapist.id, Therapist.email, Therapist.timezone, Occurrence.start_utc)
        .select_from(TherapySession)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        .join(Therapist, Therapist.id == Connection.therapist_id)
        .where(TherapySession.id == session_id)
    ).first()
    if found is None:
        return None
    therapist_id, email, zone, start = found
    return int(therapist_id), str(email), str(zone or "UTC"), start


def tell_link_missing(
    store: Store,
    session: Session,
    payload: dict[str, Any],
    *,
    sender: str,
    now: datetime | None = None,
) -> bool:
    """Queue the e-mail for one ``video.link_missing`` event in ``session``; False when not needed.

    Idempotent: keyed by session, reason and start, so a redelivered event (or the same gap found
    again) queues nothing new, while a later gap of the same session is told again.
    """
    session_id, code = payload.get("session_id"), str(payload.get("reason") or "")
    if not isinstance(session_id, int):
        return False
    facts = _facts(session, session_id)
    if facts is None:
        return False
    therapist_id, email, zone, start = facts
    now = now or datetime.now(UTC)
    if start <= now:
        return False  # over or under way: too late for the mail to help
    what, todo = _REASONS.get(code, _UNKNOWN)
    text = (
        f"The online session on {_when(start, zone)} has no video link.\n\n"
        f"Why: {what}\n"
        f"What to do: {todo.format(session_id=session_id)}\n\n"
        f"Session {session_id} in 'alliance sessions' shows the current state.\n"
    )
    queued = queue_mail(
        store,
        session,
        dedupe_key=f"{PURPOSE}|{session_id}|{code}|{start.astimezone(UTC).isoformat()}",
        purpose=PURPOSE,
        therapist_id=therapist_id,
        session_id=session_id,
        envelope=Envelope(to=email, subject=SUBJECT, text=text),
        send_after=now,
        expires_at=start,
        domain=sender.rpartition("@")[2].rstrip(">") or "alliance.local",
    )
    if queued:
        log.info("therapist told that a session has no video link (%s)", code, extra={"session_id": session_id})
    return queued
