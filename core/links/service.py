"""Client links: issue, show again, revoke, and open one for the client's page.

A link is ``{base_url}/c/{token}``: 192 random bits, nothing else. The database holds the
token's SHA-256 (the lookup key, so a copy of the database opens no link) and the token itself
encrypted with the therapist's data key and bound to the session (so ``alliance sessions --json``
can print the URL again; only a process holding the master key can). Why encrypt rather than
derive the token by HMAC from a server secret: the keyring already exists, is rotated and backed
up, and crypto-shredding the therapist's key kills every link with it; a second secret would not.

Log lines carry session ids only, never a token or its hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.clients.models import Client, TherapySession
from core.crypto import DecryptionError, Owner
from core.links.models import ClientCheckin, ClientLink, JoinClick, TherapistContact
from core.links.policy import CallTimes, LinkPolicy, expires_at
from core.ratings.models import Rating, RatingDecline, SessionEnd
from core.store.db import Store
from core.store.models import Occurrence
from core.sync.content import unseal
from core.sync.types import OccurrenceKey, Status

log = logging.getLogger(__name__)

TOKEN_BYTES = 24  # 192 bits; token_urlsafe gives 32 characters
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
CONTACT_LIMIT = 300
LOCATION_LIMIT = 300
CLIENT_CHECKLIST = ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8")
"""The client pre-session checklist items (shared reference, section D); their text lives in the portal."""


class LinkError(Exception):
    """A link request that cannot be done; the message is one line for a user."""


class UnknownSessionForLink(LinkError, LookupError):
    """No session of this therapist has that id."""


class InvalidCheckin(LinkError, ValueError):
    """A check-in field that is not valid; ``field`` names it."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True, slots=True)
class LinkPage:
    """Everything the client's page needs about its session (resolved from a valid token)."""

    session_id: int
    client_id: int
    therapist_id: int
    start: datetime
    end: datetime
    all_day: bool
    cancelled: bool
    event_timezone: str | None
    client_timezone: str | None
    video_url: str | None
    contact_line: str | None
    call: CallTimes | None
    rated: bool
    expires_at: datetime
    # Checklist items the client already ticked (never location or number: a shared device).
    checked: tuple[str, ...] = ()
    in_person: bool = False  # no call: no device check, no Join, no online checklist
    client_language: str | None = None  # the client's stored language: the page's default
    declined: bool = False  # the client said they would rather not rate this session


@dataclass(frozen=True, slots=True)
class CheckinView:
    """What the client confirmed for one session (therapist-only)."""

    session_id: int
    checked: tuple[str, ...]
    location: str | None
    callback: str | None
    updated_at: datetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_url(base_url: str, token: str) -> str:
    """The URL a client opens: nothing in it but the random token."""
    return f"{base_url.rstrip('/')}/c/{token}"


def plausible_token(token: str) -> bool:
    """A cheap shape check before any database work (length and URL-safe base64 alphabet)."""
    return 20 <= len(token) <= 64 and all(c in _TOKEN_CHARS for c in token)


def _token_context(session_id: int) -> str:
    return f"client_links.token|{session_id}"


def _therapist_session(session: Session, therapist_id: int, session_id: int) -> TherapySession:
    row = session.scalar(
        select(TherapySession)
        .join(Client, Client.id == TherapySession.client_id)
        .where(TherapySession.id == session_id, Client.therapist_id == therapist_id)
    )
    if row is None:
        raise UnknownSessionForLink(f"no session with id {session_id}")
    return row


def _open_token(store: Store, session: Session, therapist_id: int, link: ClientLink) -> str:
    return store.keyring.decrypt(
        session, Owner("therapist", therapist_id), link.token_sealed, _token_context(link.session_id)
    ).decode()


def issue_link(store: Store, therapist_id: int, session_id: int, *, now: datetime | None = None) -> str:
    """The session's live link token, issuing one when it has none (or its client changed).

    Idempotent: a live link is returned as it is. A revoked link, or one issued to the client the
    session no longer belongs to, is replaced by a new token (the old one never resolves again).
    """
    at = now or datetime.now(UTC)
    for attempt in range(3):
        try:
            return _issue(store, therapist_id, session_id, at)
        except IntegrityError:
            # A concurrent issuer won the unique session_id; the next round returns its token.
            if attempt == 2:
                raise
    raise RuntimeError("unreachable")  # pragma: no cover


def _issue(store: Store, therapist_id: int, session_id: int, at: datetime) -> str:
    with store.session() as session:
        ts = _therapist_session(session, therapist_id, session_id)
        link = session.scalar(select(ClientLink).where(ClientLink.session_id == session_id))
        if link is not None and link.revoked_at is None and link.client_id == ts.client_id:
            return _open_token(store, session, therapist_id, link)
        token = secrets.token_urlsafe(TOKEN_BYTES)
        cipher = store.keyring.cipher(session, Owner("therapist", therapist_id))
        sealed = cipher.encrypt_text(token, _token_context(session_id))
        if link is None:
            session.add(
                ClientLink(
                    session_id=session_id,
                    client_id=ts.client_id,
                    token_hash=token_hash(token),
                    token_sealed=sealed,
                    issued_at=at,
                )
            )
        else:
            link.client_id = ts.client_id
            link.token_hash = token_hash(token)
            link.token_sealed = sealed
            link.issued_at = at
            link.revoked_at = None
        session.flush()
        log.info("session %d: client link issued", session_id)
        return token


def revoke_link(store: Store, therapist_id: int, session_id: int, *, now: datetime | None = None) -> bool:
    """Revoke the session's link; False when it had no live one."""
    with store.session() as session:
        _therapist_session(session, therapist_id, session_id)
        link = session.scalar(select(ClientLink).where(ClientLink.session_id == session_id))
        if link is None or link.revoked_at is not None:
            return False
        link.revoked_at = now or datetime.now(UTC)
    log.info("session %d: client link revoked", session_id)
    return True


def live_tokens(store: Store, therapist_id: int, session_ids: Sequence[int]) -> dict[int, str]:
    """Session id -> live token, for this therapist's sessions that have one (for listings)."""
    if not session_ids:
        return {}
    with store.session() as session:
        rows = session.execute(
            select(ClientLink, TherapySession.client_id)
            .join(TherapySession, TherapySession.id == ClientLink.session_id)
            .join(Client, Client.id == TherapySession.client_id)
            .where(
                ClientLink.session_id.in_(list(session_ids)),
                ClientLink.revoked_at.is_(None),
                Client.therapist_id == therapist_id,
            )
        ).all()
        return {
            link.session_id: _open_token(store, session, therapist_id, link)
            for link, client_id in rows
            if link.client_id == client_id
        }


def handle_session_assigned(store: Store, therapist_id: int, session_id: int) -> str:
    """Outbox handler body for ``session.assigned``: make sure the session has a live link."""
    return issue_link(store, therapist_id, session_id)


# -- the client's side --------------------------------------------------------------------------


# Built once: constructing this statement costs more than running it (SQLAlchemy caches the compiled form).
_OPEN_QUERY = (
    select(
        ClientLink.revoked_at,
        ClientLink.client_id,
        TherapySession.id,
        TherapySession.client_id,
        TherapySession.modality,
        Occurrence.connection_id,
        Occurrence.ical_uid,
        Occurrence.recurrence_id,
        Occurrence.status,
        Occurrence.all_day,
        Occurrence.start_utc,
        Occurrence.end_utc,
        Occurrence.timezone,
        Occurrence.content,
        Client.therapist_id,
        Client.details,
        TherapistContact.contact_line,
        SessionEnd.session_id,
        SessionEnd.started_at,
        SessionEnd.ended_at,
        SessionEnd.no_show,
        Rating.id,
        ClientCheckin.client_id,
        ClientCheckin.answers,
        RatingDecline.session_id,
    )
    .join(TherapySession, TherapySession.id == ClientLink.session_id)
    .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
    .join(Client, Client.id == TherapySession.client_id)
    .outerjoin(TherapistContact, TherapistContact.therapist_id == Client.therapist_id)
    .outerjoin(SessionEnd, SessionEnd.session_id == TherapySession.id)
    .outerjoin(Rating, Rating.session_id == TherapySession.id)
    .outerjoin(ClientCheckin, ClientCheckin.session_id == TherapySession.id)
    .outerjoin(RatingDecline, RatingDecline.session_id == TherapySession.id)
    .where(ClientLink.token_hash == bindparam("token_hash"))
)


def open_link(store: Store, token: str, *, policy: LinkPolicy, now: datetime | None = None) -> LinkPage | None:
    """The page data of a valid token; None for an unknown, revoked, expired or reassigned one.

    The caller answers every None the same way (one plain 404), so nobody learns which it was.
    Every client page load runs this: one query of plain columns (no ORM entities), outer-joined
    to the contact line, the call's end, the rating and the check-in (benchmarks/client_pages.py).
    """
    if not plausible_token(token):
        return None
    at = now or datetime.now(UTC)
    # A plain connection, not an ORM session: the read is Core and the ORM's execute path cost
    # more than the query itself. The keyring only touches the session on a key-cache miss.
    with store.reader() as connection, Session(bind=connection) as session:
        row = connection.execute(_OPEN_QUERY, {"token_hash": token_hash(token)}).first()
        if row is None:
            return None
        (
            revoked_at,
            link_client,
            session_id,
            client_id,
            modality,
            connection_id,
            uid,
            recurrence_id,
            status,
            all_day,
            start,
            end,
            event_zone,
            content_blob,
            therapist_id,
            details_blob,
            contact_line,
            end_row,
            call_started,
            call_ended,
            no_show,
            rating_id,
            checkin_client,
            checkin_blob,
            declined_row,
        ) = row
        if revoked_at is not None or link_client != client_id:
            return None
        expiry = expires_at(end, policy)
        if at >= expiry:
            return None
        keyring = store.keyring
        try:
            # A session's occurrence is always in a connection of its client's therapist.
            cipher = keyring.cipher_for_blob(session, Owner("therapist", therapist_id), content_blob)
            content = unseal(cipher, connection_id, OccurrenceKey(uid, recurrence_id), content_blob)
            details: dict[str, Any] = json.loads(
                keyring.decrypt(
                    session, Owner("client", client_id), details_blob, f"clients.details|{client_id}|{therapist_id}"
                )
            )
            checked: tuple[str, ...] = ()
            if checkin_blob is not None and checkin_client == client_id:
                answers = keyring.decrypt(
                    session, Owner("client", client_id), checkin_blob, _checkin_context(session_id, client_id)
                )
                checked = tuple(json.loads(answers).get("checked", []))
        except DecryptionError:
            # A destroyed key (the client was erased): the link is dead.
            return None
    return LinkPage(
        session_id=session_id,
        client_id=client_id,
        therapist_id=therapist_id,
        start=start,
        end=end,
        all_day=all_day,
        cancelled=status == Status.CANCELLED.value,
        event_timezone=event_zone,
        client_timezone=details.get("timezone"),
        video_url=content.video_url,
        contact_line=contact_line,
        call=CallTimes(call_started, call_ended, no_show) if end_row is not None else None,
        rated=rating_id is not None,
        expires_at=expiry,
        checked=checked,
        in_person=modality == "in_person",
        client_language=details.get("language"),
        declined=declined_row is not None,
    )


def record_join(store: Store, session_id: int, *, now: datetime | None = None) -> None:
    """Record that the client pressed Join (every press: the first and the last both tell something)."""
    with store.session() as session:
        session.add(JoinClick(session_id=session_id, clicked_at=now or datetime.now(UTC)))
    log.info("session %d: client pressed join", session_id)


def join_clicks(store: Store, therapist_id: int, session_id: int) -> list[datetime]:
    """When the client pressed Join for one of this therapist's sessions, oldest first."""
    with store.session() as session:
        _therapist_session(session, therapist_id, session_id)
        return list(
            session.scalars(
                select(JoinClick.clicked_at).where(JoinClick.session_id == session_id).order_by(JoinClick.clicked_at)
            )
        )


# -- check-in (session-start item S2 answered ahead by the client) -------------------------------


def _checkin_context(session_id: int, client_id: int) -> str:
    return f"client_checkins.answers|{session_id}|{client_id}"


def _clean(value: str | None, field: str, limit: int) -> str | None:
    text = " ".join((value or "").split())
    if len(text) > limit:
        raise InvalidCheckin(f"{field} is longer than {limit} characters", field)
    return text or None


def save_checkin(
    store: Store,
    page: LinkPage,
    *,
    checked: Sequence[str],
    location: str | None,
    callback: str | None,
    now: datetime | None = None,
) -> None:
    """Store (or replace) the client's check-in for the session, encrypted with the client's key."""
    unknown = [c for c in checked if c not in CLIENT_CHECKLIST]
    if unknown:
        raise InvalidCheckin("unknown checklist item", "checked")
    place = _clean(location, "location", LOCATION_LIMIT)
    phone = _clean(callback, "callback", 40)
    if phone is not None and (
        sum(ch.isdigit() for ch in phone) < 3 or not all(ch in "+0123456789 ()./-" for ch in phone)
    ):
        raise InvalidCheckin("the callback number may hold digits, spaces, + ( ) . / - only", "callback")
    answers = {"checked": sorted(set(checked)), "location": place, "callback": phone}
    at = now or datetime.now(UTC)
    with store.session() as session:
        cipher = store.keyring.cipher(
            session, Owner("client", page.client_id), parent=Owner("therapist", page.therapist_id)
        )
        sealed = cipher.encrypt(
            json.dumps(answers, ensure_ascii=False).encode(), _checkin_context(page.session_id, page.client_id)
        )
        row = session.get(ClientCheckin, page.session_id)
        if row is None:
            session.add(
                ClientCheckin(session_id=page.session_id, client_id=page.client_id, answers=sealed, updated_at=at)
            )
        else:
            row.client_id = page.client_id
            row.answers = sealed
            row.updated_at = at
    log.info("session %d: client check-in saved", page.session_id)


def get_checkin(store: Store, therapist_id: int, session_id: int) -> CheckinView | None:
    """The client's check-in for one of this therapist's sessions (None when there is none)."""
    with store.session() as session:
        ts = _therapist_session(session, therapist_id, session_id)
        row = session.get(ClientCheckin, session_id)
        if row is None or row.client_id != ts.client_id:
            return None
        try:
            raw = store.keyring.decrypt(
                session, Owner("client", row.client_id), row.answers, _checkin_context(session_id, row.client_id)
            )
        except DecryptionError:
            return None
        data: dict[str, Any] = json.loads(raw)
        return CheckinView(
            session_id=session_id,
            checked=tuple(data.get("checked", [])),
            location=data.get("location"),
            callback=data.get("callback"),
            updated_at=row.updated_at,
        )


# -- the therapist's contact line ----------------------------------------------------------------


def set_contact_line(store: Store, therapist_id: int, line: str | None, *, now: datetime | None = None) -> None:
    """Set (or clear with None / "") the line clients see on a cancelled session's page."""
    text = " ".join((line or "").split())
    if len(text) > CONTACT_LIMIT:
        raise LinkError(f"the contact line is longer than {CONTACT_LIMIT} characters")
    with store.session() as session:
        row = session.get(TherapistContact, therapist_id)
        if not text:
            if row is not None:
                session.delete(row)
            return
        if row is None:
            session.add(
                TherapistContact(therapist_id=therapist_id, contact_line=text, updated_at=now or datetime.now(UTC))
            )
        else:
            row.contact_line = text
            row.updated_at = now or datetime.now(UTC)


def get_contact_line(store: Store, therapist_id: int) -> str | None:
    with store.session() as session:
        row = session.get(TherapistContact, therapist_id)
        return row.contact_line if row else None


__all__ = [
    "CLIENT_CHECKLIST",
    "CheckinView",
    "InvalidCheckin",
    "LinkError",
    "LinkPage",
    "UnknownSessionForLink",
    "get_checkin",
    "get_contact_line",
    "handle_session_assigned",
    "issue_link",
    "join_clicks",
    "link_url",
    "live_tokens",
    "open_link",
    "plausible_token",
    "record_join",
    "revoke_link",
    "save_checkin",
    "set_contact_line",
    "token_hash",
]
