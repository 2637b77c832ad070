"""Keep a session's client e-mails in the outbox in line with the session (core.client_mail.plan).

:func:`reconcile` reads the session's facts, computes the plan, withdraws the pending messages
the plan no longer holds (a moved, cancelled or reassigned session) and queues the planned ones
not queued yet, all in one transaction. It is idempotent, so the outbox handlers and the
periodic sweep may call it as often as they like: at least once, never twice (dedupe keys).

Log lines carry session ids only.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.client_mail.plan import (
    PURPOSES,
    Kind,
    MailPlanConfig,
    Planned,
    SessionFacts,
    key_prefix,
    plan,
    prefix_of,
    timely,
)
from core.client_mail.texts import LANGUAGES, cancellation_ics, invitation_ics, local_time, render
from core.clients.models import Client, TherapySession
from core.crypto import DecryptionError, Owner
from core.links import issue_link, link_url, live_tokens
from core.mail import PENDING, SENDING, SENT, WITHDRAWN, Attachment, Envelope, MailMessage, open_envelope, queue_mail
from core.ratings.models import Rating, RatingDecline
from core.ratings.service import call_times
from core.store.db import Store
from core.store.models import Occurrence, OccurrenceHistory
from core.sync.types import Status

__all__ = ["ClientMailConfig", "ReconcileResult", "reconcile", "reconcile_occurrence", "sweep"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClientMailConfig:
    base_url: str
    sender: str  # the From line; its address is the invitation's organizer
    language: str = "en"  # the practice's default; a client's own language (core.clients) wins
    plan: MailPlanConfig = field(default_factory=MailPlanConfig)
    domain: str = "alliance.local"  # of the invitation UID

    def __post_init__(self) -> None:
        if self.language not in LANGUAGES:
            raise ValueError(f"client mail language must be one of {', '.join(LANGUAGES)}, got {self.language!r}")


@dataclass
class ReconcileResult:
    queued: list[str] = field(default_factory=list)  # purposes, in order
    withdrawn: int = 0


@dataclass(frozen=True, slots=True)
class _Context:
    facts: SessionFacts
    therapist_id: int
    client_id: int
    all_day: bool
    zone: str | None
    language: str
    in_person: bool


@dataclass(frozen=True, slots=True)
class _Recipient:
    """Who one message goes to, in their language and zone; ``url`` None: they have no page."""

    address: str
    client_id: int
    language: str
    zone: str | None
    url: str | None


def _details(store: Store, session: Session, client: Client) -> dict[str, Any]:
    try:
        raw = store.keyring.decrypt(
            session, Owner("client", client.id), client.details, f"clients.details|{client.id}|{client.therapist_id}"
        )
    except DecryptionError:  # an erased client: nothing to send, pending mail withdrawn
        return {}
    details: dict[str, Any] = json.loads(raw)
    return details


def _language(details: dict[str, Any], config: ClientMailConfig) -> str:
    stored = details.get("language")
    return stored if isinstance(stored, str) and stored in LANGUAGES else config.language


def _count(session: Session, occurrence_id: int, *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(OccurrenceHistory)
    return session.scalar(query.where(OccurrenceHistory.occurrence_id == occurrence_id, *where)) or 0


def _facts(
    store: Store, session: Session, session_id: int, token: str | None, config: ClientMailConfig
) -> _Context | None:
    row = session.execute(
        select(TherapySession, Occurrence, Client)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Client, Client.id == TherapySession.client_id)
        .where(TherapySession.id == session_id)
    ).first()
    if row is None:
        return None
    ts, occ, client = row
    details = _details(store, session, client)
    rated = session.scalar(select(Rating.id).where(Rating.session_id == session_id)) is not None
    declined = session.get(RatingDecline, session_id) is not None
    facts = SessionFacts(
        session_id=session_id,
        recipient=details.get("email") or None,
        link_token=token,
        cancelled=occ.status == Status.CANCELLED.value,
        start=occ.start_utc,
        end=occ.end_utc,
        call=call_times(session, session_id),
        rated=rated,
        declined=declined,
        archived=client.archived_at is not None,
        moves=_count(
            session,
            occ.id,
            OccurrenceHistory.old_start_utc.is_not(None),
            or_(
                OccurrenceHistory.old_start_utc != OccurrenceHistory.new_start_utc,
                OccurrenceHistory.old_end_utc != OccurrenceHistory.new_end_utc,
            ),
        ),
        cancels=_count(session, occ.id, OccurrenceHistory.kind == Status.CANCELLED.value),
    )
    return _Context(
        facts,
        client.therapist_id,
        client.id,
        occ.all_day,
        details.get("timezone") or occ.timezone,
        _language(details, config),
        ts.modality == "in_person",
    )


def _handed_over(
    store: Store, session: Session, ctx: _Context, existing: list[MailMessage], config: ClientMailConfig
) -> dict[str, _Recipient]:
    """Earlier clients of this session whose calendar still holds its invitation, by key prefix.

    "Holds" means the last calendar message that went out to that prefix (sent, or being sent
    right now) was an invitation, not a cancellation. The address is the one that invitation
    went to; the language and zone are the earlier client's own.
    """
    last: dict[str, MailMessage] = {}
    for m in existing:  # in id order: the last one per prefix wins
        if m.purpose in (Kind.INVITATION.value, Kind.CANCELLATION.value) and m.status in (SENT, SENDING):
            last[prefix_of(m.dedupe_key)] = m
    out: dict[str, _Recipient] = {}
    for prefix, message in last.items():
        if message.purpose != Kind.INVITATION.value or message.client_id in (None, ctx.client_id):
            continue
        envelope = open_envelope(store, session, message)
        former = session.get(Client, message.client_id)
        if envelope is None or former is None:  # erased since: nobody to tell
            continue
        details = _details(store, session, former)
        zone = details.get("timezone") or ctx.zone
        out[prefix] = _Recipient(envelope.to, former.id, _language(details, config), zone, url=None)
    return out


def _current(ctx: _Context, config: ClientMailConfig) -> _Recipient:
    facts = ctx.facts
    if facts.recipient is None or facts.link_token is None:  # pragma: no cover - plan() sends them nothing
        raise ValueError(f"session {facts.session_id} has no recipient")
    url = link_url(config.base_url, facts.link_token)
    return _Recipient(facts.recipient, ctx.client_id, ctx.language, ctx.zone, url)


def _invited(ctx: _Context, existing: list[MailMessage]) -> bool:
    """Whether this recipient's calendar holds the session now: of the invitations and cancellations
    that went out (or are going out) to them about it, the last is an invitation.

    A session cancelled, restored before its new invitation went out, and cancelled again is in
    no calendar of theirs any more: a second cancellation would be about nothing they hold.
    """
    facts = ctx.facts
    if facts.recipient is None or facts.link_token is None:
        return False
    prefix = key_prefix(facts.session_id, facts.link_token, facts.recipient) + ":"
    calendar = [
        m
        for m in existing
        if m.purpose in _CALENDAR_PURPOSES and m.status in (SENT, SENDING) and m.dedupe_key.startswith(prefix)
    ]
    return bool(calendar) and max(calendar, key=lambda m: m.id).purpose == Kind.INVITATION.value


_CALENDAR_PURPOSES = (Kind.INVITATION.value, Kind.CANCELLATION.value)


def _therapist_of(store: Store, session_id: int, session: Session | None = None) -> int | None:
    query = (
        select(Client.therapist_id)
        .join(TherapySession, TherapySession.client_id == Client.id)
        .where(TherapySession.id == session_id)
    )
    if session is not None:
        return session.scalar(query)
    with store.session() as own:
        return own.scalar(query)


def _envelope(
    item: Planned, ctx: _Context, to: _Recipient, existing: list[MailMessage], config: ClientMailConfig, now: datetime
) -> Envelope:
    facts = ctx.facts
    url, lang = to.url, to.language
    when = local_time(facts.start, to.zone, lang, all_day=ctx.all_day)
    if item.kind is Kind.REMINDER:
        words = render("reminder", language=lang, when=when, url=url, with_ics=False, in_person=ctx.in_person)
        return Envelope(to.address, words.subject, words.text, words.html)
    if item.kind is Kind.RATING:
        words = render("rating", language=lang, when=when, url=url, with_ics=False)
        return Envelope(to.address, words.subject, words.text, words.html)
    # Invitations and cancellations share the UID; each one's SEQUENCE is above every earlier one's.
    calendar_items = [m for m in existing if m.purpose in (Kind.INVITATION.value, Kind.CANCELLATION.value)]
    uid = f"alliance-{facts.session_id}@{config.domain}"
    if item.kind is Kind.CANCELLATION:
        words = render("cancellation", language=lang, when=when, url=url, with_ics=True)
        ics = cancellation_ics(
            uid=uid,
            sequence=len(calendar_items),
            start=facts.start,
            end=facts.end,
            organizer=config.sender,
            attendee=to.address,
            language=lang,
            stamp=now,
        )
        attachment = Attachment("cancel.ics", "text/calendar; method=CANCEL; charset=utf-8", ics)
        return Envelope(to.address, words.subject, words.text, words.html, (attachment,))
    if url is None:  # pragma: no cover - only cancellations go to someone without a page
        raise ValueError(f"session {facts.session_id}: an invitation needs the client's link")
    prefix = prefix_of(item.key) + ":"
    told = [m for m in calendar_items if m.status == SENT and m.dedupe_key.startswith(prefix)]
    # "moved" only when the client's calendar holds the appointment (the last thing sent was no cancellation).
    moved = bool(told) and told[-1].purpose == Kind.INVITATION.value
    words = render(
        "update" if moved else "confirmation", language=lang, when=when, url=url, with_ics=True, in_person=ctx.in_person
    )
    ics = invitation_ics(
        uid=uid,
        sequence=len(calendar_items),  # one more than any invitation or cancellation of this session before
        start=facts.start,
        end=facts.end,
        url=url,
        organizer=config.sender,
        attendee=to.address,
        language=lang,
        stamp=now,
    )
    attachment = Attachment("invite.ics", "text/calendar; method=REQUEST; charset=utf-8", ics)
    return Envelope(to.address, words.subject, words.text, words.html, (attachment,))


def _reconcile_once(
    store: Store, session_id: int, token: str | None, config: ClientMailConfig, now: datetime
) -> ReconcileResult:
    result = ReconcileResult()
    with store.session() as session:
        ctx = _facts(store, session, session_id, token, config)
        existing = list(
            session.scalars(
                select(MailMessage)
                .where(MailMessage.session_id == session_id, MailMessage.purpose.in_(PURPOSES))
                .order_by(MailMessage.id)
            )
        )
        former: dict[str, _Recipient] = {}
        if ctx is not None:
            former = _handed_over(store, session, ctx, existing, config)
            ctx = replace(ctx, facts=replace(ctx.facts, invited=_invited(ctx, existing), handed_over=tuple(former)))
        wanted = plan(ctx.facts, config.plan) if ctx is not None else []
        keys = {item.key for item in wanted}
        stale = [m.id for m in existing if m.status == PENDING and m.dedupe_key not in keys]
        if stale:
            done = session.execute(
                update(MailMessage)
                .where(MailMessage.id.in_(stale), MailMessage.status == PENDING)
                .values(status=WITHDRAWN, last_error="withdrawn: the session changed")
            )
            result.withdrawn = int(done.rowcount)  # type: ignore[attr-defined]
        if ctx is None:
            return result
        known = {m.dedupe_key for m in existing}
        for item in wanted:
            if item.key in known or not timely(item, now, config.plan):
                continue
            to = former.get(prefix_of(item.key)) or _current(ctx, config)
            envelope = _envelope(item, ctx, to, existing, config, now)
            if queue_mail(
                store,
                session,
                dedupe_key=item.key,
                purpose=item.kind.value,
                therapist_id=ctx.therapist_id,
                client_id=to.client_id,
                session_id=session_id,
                envelope=envelope,
                send_after=item.send_after or now,
                expires_at=item.expires_at,
                domain=config.domain,
            ):
                result.queued.append(item.kind.value)
                existing.append(session.scalars(select(MailMessage).where(MailMessage.dedupe_key == item.key)).one())
    if result.queued or result.withdrawn:
        log.info("session %d: client mail %d queued, %d withdrawn", session_id, len(result.queued), result.withdrawn)
    return result


def reconcile(
    store: Store,
    session_id: int,
    config: ClientMailConfig,
    *,
    now: datetime | None = None,
    issue: bool = False,
    therapist_id: int | None = None,
    reading: Session | None = None,
) -> ReconcileResult:
    """Bring the session's client mail in line with the session; ``issue`` makes sure it has a link.

    ``issue`` is for ``session.assigned`` (a new client gets a link then, core.links); elsewhere
    a revoked link stays revoked and its pending mail is withdrawn. ``therapist_id`` when the
    caller read it already; ``reading`` (an outbox delivery's session) serves the reads that
    come before the mail's own transaction, one transaction less.
    """
    at = now or datetime.now(UTC)
    if therapist_id is None:
        therapist_id = _therapist_of(store, session_id, reading)
    if therapist_id is None:
        return ReconcileResult()
    if issue:
        token: str | None = issue_link(store, therapist_id, session_id, now=at)
    else:
        token = live_tokens(store, therapist_id, [session_id]).get(session_id)
    for attempt in range(3):
        try:
            return _reconcile_once(store, session_id, token, config, at)
        except IntegrityError:
            # A concurrent reconcile queued the same key first; the next round sees it.
            if attempt == 2:
                raise
    raise RuntimeError("unreachable")  # pragma: no cover


def reconcile_occurrence(
    store: Store,
    occurrence_id: int,
    config: ClientMailConfig,
    *,
    now: datetime | None = None,
    reading: Session | None = None,
) -> ReconcileResult | None:
    """:func:`reconcile` for the session of an occurrence (None when it is no session).

    ``reading``: as for :func:`reconcile` (the session and its therapist are read in one query).
    """
    query = (
        select(TherapySession.id, Client.therapist_id)
        .join(Client, Client.id == TherapySession.client_id)
        .where(TherapySession.occurrence_id == occurrence_id)
    )
    if reading is not None:
        found = reading.execute(query).first()
    else:
        with store.session() as session:
            found = session.execute(query).first()
    if found is None:
        return None
    return reconcile(store, found.id, config, now=now, therapist_id=found.therapist_id)


def sweep(store: Store, config: ClientMailConfig, *, lookahead: timedelta, now: datetime | None = None) -> int:
    """Reconcile the sessions with client mail due before ``now + lookahead``; how many.

    Catches what no event announces: a rating submitted before its e-mail, a changed address,
    an archived or erased client, a revoked link.
    """
    at = now or datetime.now(UTC)
    with store.session() as session:
        ids = list(
            session.scalars(
                select(MailMessage.session_id)
                .where(
                    MailMessage.status == PENDING,
                    MailMessage.purpose.in_(PURPOSES),
                    MailMessage.next_attempt_at <= at + lookahead,
                    MailMessage.session_id.is_not(None),
                )
                .distinct()
            )
        )
    for session_id in ids:
        if session_id is not None:
            reconcile(store, session_id, config, now=at)
    return len(ids)
