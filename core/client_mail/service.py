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
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.client_mail.plan import PURPOSES, Kind, MailPlanConfig, Planned, SessionFacts, plan, timely
from core.client_mail.texts import LANGUAGES, invitation_ics, local_time, render
from core.clients.models import Client, TherapySession
from core.crypto import DecryptionError, Owner
from core.links import issue_link, link_url, live_tokens
from core.mail import PENDING, SENT, WITHDRAWN, Attachment, Envelope, MailMessage, queue_mail
from core.ratings.models import Rating
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
    language: str = "en"  # no per-client preference is stored: one language per practice
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


def _count(session: Session, occurrence_id: int, *where: ColumnElement[bool]) -> int:
    query = select(func.count()).select_from(OccurrenceHistory)
    return session.scalar(query.where(OccurrenceHistory.occurrence_id == occurrence_id, *where)) or 0


def _facts(store: Store, session: Session, session_id: int, token: str | None) -> _Context | None:
    row = session.execute(
        select(TherapySession, Occurrence, Client)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Client, Client.id == TherapySession.client_id)
        .where(TherapySession.id == session_id)
    ).first()
    if row is None:
        return None
    _ts, occ, client = row
    try:
        raw = store.keyring.decrypt(
            session, Owner("client", client.id), client.details, f"clients.details|{client.id}|{client.therapist_id}"
        )
        details: dict[str, Any] = json.loads(raw)
    except DecryptionError:  # an erased client: nothing to send, pending mail withdrawn
        details = {}
    rated = session.scalar(select(Rating.id).where(Rating.session_id == session_id)) is not None
    facts = SessionFacts(
        session_id=session_id,
        recipient=details.get("email") or None,
        link_token=token,
        cancelled=occ.status == Status.CANCELLED.value,
        start=occ.start_utc,
        end=occ.end_utc,
        call=call_times(session, session_id),
        rated=rated,
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
    return _Context(facts, client.therapist_id, client.id, occ.all_day, details.get("timezone") or occ.timezone)


def _therapist_of(store: Store, session_id: int) -> int | None:
    with store.session() as session:
        return session.scalar(
            select(Client.therapist_id)
            .join(TherapySession, TherapySession.client_id == Client.id)
            .where(TherapySession.id == session_id)
        )


def _envelope(
    item: Planned, ctx: _Context, existing: list[MailMessage], config: ClientMailConfig, now: datetime
) -> Envelope:
    facts = ctx.facts
    assert facts.recipient is not None and facts.link_token is not None
    url = link_url(config.base_url, facts.link_token)
    when = local_time(facts.start, ctx.zone, config.language, all_day=ctx.all_day)
    if item.kind is Kind.REMINDER:
        words = render("reminder", language=config.language, when=when, url=url, with_ics=False)
        return Envelope(facts.recipient, words.subject, words.text, words.html)
    if item.kind is Kind.RATING:
        words = render("rating", language=config.language, when=when, url=url, with_ics=False)
        return Envelope(facts.recipient, words.subject, words.text, words.html)
    invitations = [m for m in existing if m.purpose == Kind.INVITATION.value]
    prefix = item.key.rsplit(":", 2)[0]  # cm:<session>:<recipient>
    told = any(m.status == SENT and m.dedupe_key.startswith(prefix + ":") for m in invitations)
    words = render("update" if told else "confirmation", language=config.language, when=when, url=url, with_ics=True)
    ics = invitation_ics(
        uid=f"alliance-{facts.session_id}@{config.domain}",
        sequence=len(invitations),  # one more than any invitation of this session before
        start=facts.start,
        end=facts.end,
        url=url,
        organizer=config.sender,
        attendee=facts.recipient,
        language=config.language,
        stamp=now,
    )
    attachment = Attachment("invite.ics", "text/calendar; method=REQUEST; charset=utf-8", ics)
    return Envelope(facts.recipient, words.subject, words.text, words.html, (attachment,))


def _reconcile_once(
    store: Store, session_id: int, token: str | None, config: ClientMailConfig, now: datetime
) -> ReconcileResult:
    result = ReconcileResult()
    with store.session() as session:
        ctx = _facts(store, session, session_id, token)
        wanted = plan(ctx.facts, config.plan) if ctx is not None else []
        keys = {item.key for item in wanted}
        existing = list(
            session.scalars(
                select(MailMessage)
                .where(MailMessage.session_id == session_id, MailMessage.purpose.in_(PURPOSES))
                .order_by(MailMessage.id)
            )
        )
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
            envelope = _envelope(item, ctx, existing, config, now)
            if queue_mail(
                store,
                session,
                dedupe_key=item.key,
                purpose=item.kind.value,
                therapist_id=ctx.therapist_id,
                client_id=ctx.client_id,
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
    store: Store, session_id: int, config: ClientMailConfig, *, now: datetime | None = None, issue: bool = False
) -> ReconcileResult:
    """Bring the session's client mail in line with the session; ``issue`` makes sure it has a link.

    ``issue`` is for ``session.assigned`` (a new client gets a link then, core.links); elsewhere
    a revoked link stays revoked and its pending mail is withdrawn.
    """
    at = now or datetime.now(UTC)
    therapist_id = _therapist_of(store, session_id)
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
    store: Store, occurrence_id: int, config: ClientMailConfig, *, now: datetime | None = None
) -> ReconcileResult | None:
    """:func:`reconcile` for the session of an occurrence (None when it is no session)."""
    with store.session() as session:
        session_id = session.scalar(select(TherapySession.id).where(TherapySession.occurrence_id == occurrence_id))
    if session_id is None:
        return None
    return reconcile(store, session_id, config, now=now)


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
