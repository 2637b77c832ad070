"""Which e-mails a session's client should get: a pure function of the session's current state.

The service (core.client_mail.service) compares this plan with the outbox: planned messages
not queued yet are queued (when still timely), pending ones no longer planned are withdrawn.
The plan never depends on the clock, so a reminder that is merely due is never withdrawn; only
:func:`timely` looks at the clock, to avoid queuing what would arrive too late.

Every message's dedupe key names what makes it that message: the session, the recipient (a
digest of the link token and the address, so a new client, a re-issued link or a changed
address gets its own messages), and the times it is about. A key once queued is never queued
again (core.mail), so each message goes out at most once.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from core.links.policy import CallTimes, LinkPolicy, expires_at, rating_opens_at

__all__ = [
    "PURPOSES",
    "Kind",
    "MailPlanConfig",
    "Planned",
    "SessionFacts",
    "key_prefix",
    "parse_hours",
    "plan",
    "prefix_of",
    "recipient_tag",
    "timely",
]


class Kind(enum.StrEnum):
    INVITATION = "client.invitation"  # confirmation (first) or update (after a move), with the .ics
    REMINDER = "client.reminder"
    RATING = "client.rating"
    CANCELLATION = "client.cancellation"  # METHOD:CANCEL for an invitation that went out


PURPOSES = tuple(k.value for k in Kind)
"""The outbox purposes this module owns (core.mail ``purpose``)."""


@dataclass(frozen=True, slots=True)
class MailPlanConfig:
    reminder_hours: tuple[int, ...] = (24, 1)
    link: LinkPolicy = field(default_factory=LinkPolicy)
    # A reminder found late (the worker was down) still goes out this long after its time.
    reminder_grace: timedelta = timedelta(minutes=15)
    # A rating e-mail is only queued this long after the rating opened (no mail for old sessions
    # assigned after the fact).
    rating_grace: timedelta = timedelta(days=1)


@dataclass(frozen=True, slots=True)
class SessionFacts:
    """What the plan depends on, read in one transaction (core.client_mail.service)."""

    session_id: int
    recipient: str | None  # the client's e-mail; None: no mail at all
    link_token: str | None  # the live client link; None (revoked, not issued): no mail at all
    cancelled: bool
    start: datetime
    end: datetime
    call: CallTimes | None = None
    rated: bool = False
    archived: bool = False
    # How often the occurrence's times changed, and how often it was cancelled, so far. A key
    # once withdrawn is spent, so a session moved back to an earlier time, or restored, needs
    # new keys for its reminders; a restore (same times) needs no new invitation.
    moves: int = 0
    cancels: int = 0
    # The client's calendar holds this session: the last invitation (.ics) or cancellation that
    # went out to this recipient for this link was an invitation. A cancellation must then take
    # it out of their calendar; otherwise there is nothing of theirs to cancel.
    invited: bool = False
    declined: bool = False  # the client declined the rating on their link: no rating e-mail
    # Key prefixes (:func:`key_prefix`) of earlier clients of this session whose calendars still
    # hold its invitation: the session was handed to another client, so theirs must be cancelled.
    handed_over: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Planned:
    key: str
    kind: Kind
    send_after: datetime | None  # None: right away
    expires_at: datetime
    hours: int | None = None  # reminders: how long before the start


def recipient_tag(link_token: str, recipient: str) -> str:
    """16 hex digits naming (link, address) without revealing either (the token is secret)."""
    return hashlib.sha256(f"{link_token}\n{recipient.strip().lower()}".encode()).hexdigest()[:16]


def _stamp(at: datetime) -> str:
    return at.strftime("%Y%m%dT%H%MZ")


def key_prefix(session_id: int, link_token: str, recipient: str) -> str:
    """``cm:<session>:<recipient tag>``: every key of one recipient's mail about one session starts so."""
    return f"cm:{session_id}:{recipient_tag(link_token, recipient)}"


def prefix_of(dedupe_key: str) -> str:
    """The :func:`key_prefix` part of one of this module's dedupe keys."""
    return ":".join(dedupe_key.split(":")[:3])


def plan(facts: SessionFacts, config: MailPlanConfig) -> list[Planned]:
    """The messages that should exist for this session as it is now (queued or already sent)."""
    # Whoever the session belongs to now (even nobody reachable), an earlier client's calendar
    # must lose it. Their link token is gone for good, so one cancellation per prefix is enough.
    out = [Planned(f"{p}:cancel:handed", Kind.CANCELLATION, None, facts.start) for p in facts.handed_over]
    if facts.recipient is None or facts.link_token is None or facts.archived:
        return out
    prefix = key_prefix(facts.session_id, facts.link_token, facts.recipient)
    epoch = f"m{facts.moves}c{facts.cancels}"
    if facts.cancelled and facts.invited:
        # One cancellation per cancel: a restored and again cancelled session gets a second one.
        out.append(Planned(f"{prefix}:cancel:c{facts.cancels}", Kind.CANCELLATION, None, facts.start))
    if not facts.cancelled:
        # After a cancellation the client's calendar dropped the appointment: a restored session
        # needs a new invitation, hence the cancel count in the key (absent before any cancel).
        restored = f":c{facts.cancels}" if facts.cancels else ""
        times = f"{_stamp(facts.start)}-{_stamp(facts.end)}:m{facts.moves}{restored}"
        out.append(Planned(f"{prefix}:inv:{times}", Kind.INVITATION, None, facts.start))
        for hours in sorted(set(config.reminder_hours), reverse=True):
            at = facts.start - timedelta(hours=hours)
            out.append(
                Planned(
                    f"{prefix}:rem{hours}h:{_stamp(facts.start)}:{epoch}",
                    Kind.REMINDER,
                    at,
                    facts.start,
                    hours=hours,
                )
            )
        opens = rating_opens_at(facts.end, facts.call, config.link)
        if opens is not None and not facts.rated and not facts.declined:
            out.append(
                Planned(
                    f"{prefix}:rate:{_stamp(opens)}:{epoch}",
                    Kind.RATING,
                    opens,
                    expires_at(facts.end, config.link),
                )
            )
    return out


def timely(item: Planned, now: datetime, config: MailPlanConfig) -> bool:
    """Whether queuing ``item`` at ``now`` still makes sense (it would not arrive pointlessly late)."""
    if now >= item.expires_at:
        return False
    if item.send_after is None:
        return True
    if item.kind is Kind.REMINDER:
        return now < item.send_after + config.reminder_grace
    return now < item.send_after + config.rating_grace  # an invitation: any time before the start


def parse_hours(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"24,1"`` -> (24, 1); each between 1 and 24*14 hours; a clear error otherwise."""
    parts = [p.strip() for p in text.split(",")] if isinstance(text, str) else [str(p) for p in text]
    hours: list[int] = []
    for part in parts:
        if not part:
            continue
        if not part.isdigit() or not 1 <= int(part) <= 24 * 14:
            raise ValueError(f"reminder hours must be whole numbers from 1 to 336, got {part!r}")
        hours.append(int(part))
    return tuple(sorted(set(hours), reverse=True))
