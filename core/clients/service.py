"""Clients and sessions: what the CLI, the API and the job runner call.

Every function is scoped to one therapist: it only reads and writes that therapist's rows, and a
client code, event or session of another therapist is simply unknown. Log lines carry ids only,
never a name, e-mail, phone or client code; error messages do not echo them either (they may end
up in a log further up).

How an occurrence becomes a session, strongest first:
1. ``manual``: the therapist assigned this one occurrence (:func:`assign_occurrence`);
2. ``series``: the therapist assigned its series from some instant on (:func:`assign_series`),
   which also covers instances that later syncs create (:func:`apply_rules`);
3. ``rule``: exactly one active client's e-mail is among the event's attendees.
A weaker source never replaces a stronger one, and rules never remove a session.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from functools import partial
from types import EllipsisType
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import Select, and_, bindparam, exists, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.audit import Actor, record
from core.clients.codes import DEFAULT_LENGTH, MAX_LENGTH, generate_code, normalise_code, normalise_email
from core.clients.events import SESSION_ASSIGNED, SESSION_MODALITY_CHANGED, emit_session_event
from core.clients.models import Client, Modality, SeriesAssignment, SessionSource, TherapySession
from core.crypto import KeyDestroyed, Owner
from core.store.db import Store
from core.store.models import Connection, Occurrence, Therapist
from core.sync.content import OccurrenceContent, unseal
from core.sync.types import OccurrenceKey, Status, recurrence_id_for

log = logging.getLogger(__name__)

CODE_ATTEMPTS_PER_LENGTH = 8
# Outbox events after which an occurrence may newly match a rule: a new or restored instance of
# an assigned series, or an edit that added the client's e-mail to the attendees.
RULE_EVENTS = frozenset({"occurrence.created", "occurrence.restored", "occurrence.updated", "occurrence.rescheduled"})
_CHUNK = 500  # stay under bound-parameter limits
_RETRIES = 3
_PHONE = re.compile(r"^\+?[0-9 ()./-]{3,40}$")

T = TypeVar("T")


# -- errors -------------------------------------------------------------------------------------


class ClientsError(Exception):
    """A request about clients or sessions that cannot be done; the message is one line for a user."""


class UnknownClient(ClientsError, LookupError):
    """No client of this therapist has that code (or id)."""


class UnknownEvent(ClientsError, LookupError):
    """No occurrence of this therapist has that UID (in that connection)."""


class AmbiguousEvent(ClientsError):
    """The UID exists in several connections; the caller must name one."""

    def __init__(self, message: str, connections: Sequence[str]) -> None:
        super().__init__(message)
        self.connections = tuple(connections)


class OccurrenceNotFound(ClientsError, LookupError):
    """The event exists but has no occurrence at that instant, or the occurrence id is unknown."""


class UnknownSession(ClientsError, LookupError):
    """No session of this therapist has that id."""


class InvalidClientData(ClientsError, ValueError):
    """A client field that is not valid (bad e-mail, zone, modality, code...); ``field`` names it."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class ClientCodeTaken(InvalidClientData):
    """The code asked for is already another client's (of the same therapist)."""


# -- views --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """What is encrypted about a client."""

    name: str | None = None
    email: str | None = None
    phone: str | None = None
    timezone: str | None = None
    modality: Modality | None = None
    # The client's language for e-mails and their page ("en" / "es"); None: the practice's default.
    language: str | None = None


@dataclass(frozen=True, slots=True)
class ClientView:
    id: int
    code: str
    archived_at: datetime | None
    created_at: datetime
    # None unless the caller asked to reveal them (minimum necessary).
    details: ClientDetails | None = None
    # True when the client's data key was destroyed (crypto-shredded): the details are gone.
    erased: bool = False


@dataclass(frozen=True, slots=True)
class SessionView:
    id: int
    occurrence_id: int
    client_id: int
    client_code: str
    modality: Modality
    source: SessionSource
    status: Status
    start: datetime
    end: datetime
    all_day: bool
    timezone: str | None
    uid: str
    recurrence_id: str
    connection_id: int
    connection: str
    created_at: datetime
    updated_at: datetime
    client: ClientDetails | None = None


@dataclass(frozen=True, slots=True)
class SeriesAssignmentView:
    id: int
    connection_id: int
    uid: str
    client_id: int
    client_code: str
    from_start: datetime
    # Occurrences already mirrored (from ``from_start`` on) that are now this client's sessions
    # through the assignment; manual sessions of the series are not counted.
    sessions_assigned: int


@dataclass(frozen=True, slots=True)
class AssignResult:
    """What :func:`assign_event` did: one occurrence (``session``) or a series (``series``)."""

    session: SessionView | None = None
    series: SeriesAssignmentView | None = None


# -- helpers ------------------------------------------------------------------------------------


def _retrying(action: Callable[[], T]) -> T:
    """Run ``action`` (one transaction) again when a concurrent writer won a unique constraint.

    Everything here is idempotent, so the second run sees the other writer's row and converges.
    """
    for attempt in range(_RETRIES):
        try:
            return action()
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
            log.info("concurrent write on clients/sessions; retrying (attempt %d)", attempt + 2)
    raise RuntimeError("unreachable")  # pragma: no cover


def _chunks(ids: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(ids), _CHUNK):
        yield ids[i : i + _CHUNK]


def _details_context(client: Client) -> str:
    return f"clients.details|{client.id}|{client.therapist_id}"


def _seal_details(store: Store, session: Session, client: Client, details: ClientDetails) -> None:
    cipher = store.keyring.cipher(session, Owner("client", client.id), parent=Owner("therapist", client.therapist_id))
    payload = {
        "name": details.name,
        "email": details.email,
        "phone": details.phone,
        "timezone": details.timezone,
        "modality": details.modality.value if details.modality else None,
        "language": details.language,
    }
    client.details = cipher.encrypt(
        json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(), _details_context(client)
    )


def _open_details(store: Store, session: Session, client: Client) -> ClientDetails | None:
    """The client's details, or None when its key was destroyed."""
    try:
        raw = store.keyring.decrypt(session, Owner("client", client.id), client.details, _details_context(client))
    except KeyDestroyed:
        return None
    data: dict[str, Any] = json.loads(raw)
    modality = data.get("modality")
    return ClientDetails(
        name=data.get("name"),
        email=data.get("email"),
        phone=data.get("phone"),
        timezone=data.get("timezone"),
        modality=Modality(modality) if modality else None,
        language=data.get("language"),
    )


def _index_key(store: Store, session: Session, therapist_id: int) -> bytes:
    """The key of the e-mail blind index, derived from the therapist's data key (never stored).

    Keyed (not a plain hash) because e-mail addresses are guessable: a SHA-256 of one could be
    confirmed by anyone with a list of addresses and a copy of the database.
    """
    cipher = store.keyring.cipher(session, Owner("therapist", therapist_id))
    return hmac.new(cipher.key, b"alliance client e-mail index v1", hashlib.sha256).digest()


def _blind(key: bytes, normalised_email: str) -> str:
    return hmac.new(key, normalised_email.encode(), hashlib.sha256).hexdigest()


def _email_index(store: Store, session: Session, therapist_id: int, normalised_email: str) -> str:
    return _blind(_index_key(store, session, therapist_id), normalised_email)


def parse_modality(value: str | Modality | None) -> Modality | None:
    """``online`` / ``in_person`` (also ``in-person``, ``in person``); None or "" for none."""
    if value is None or isinstance(value, Modality):
        return value
    text = value.strip().lower().replace("-", "_").replace(" ", "_")
    if not text:
        return None
    try:
        return Modality(text)
    except ValueError:
        raise InvalidClientData("modality must be 'online' or 'in_person'", "modality") from None


def _clean_text(value: str | None, field: str, limit: int) -> str | None:
    if value is None:
        return None
    text = " ".join(value.split())
    if len(text) > limit:
        raise InvalidClientData(f"the {field} is longer than {limit} characters", field)
    return text or None


def _clean_email(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    normalised = normalise_email(value)
    if normalised is None:
        # The value itself is not echoed: it may be a real person's address.
        raise InvalidClientData("the e-mail address is not valid", "email")
    return normalised


def _clean_phone(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    text = value.strip()
    if not _PHONE.match(text) or sum(c.isdigit() for c in text) < 3:
        raise InvalidClientData("the phone number may hold digits, spaces, + ( ) . / - only", "phone")
    return text


def _clean_timezone(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    try:
        ZoneInfo(value.strip())
    except (ZoneInfoNotFoundError, ValueError):
        # Not echoed: API errors never repeat what was sent (portal.errors).
        raise InvalidClientData("unknown IANA time zone (use a name such as Europe/Madrid)", "timezone") from None
    return value.strip()


CLIENT_LANGUAGES = ("en", "es")


def parse_language(value: str | None) -> str | None:
    """``en`` / ``es`` (any case, also ``es-ES``); None or "" for none (the practice's default)."""
    if value is None or not value.strip():
        return None
    text = value.strip().lower().replace("_", "-").split("-")[0]
    if text not in CLIENT_LANGUAGES:
        raise InvalidClientData("language must be 'en' or 'es'", "language")
    return text


def _require_therapist(session: Session, therapist_id: int) -> None:
    if session.get(Therapist, therapist_id) is None:
        raise ClientsError(f"no therapist with id {therapist_id}")


def _client_by_code(session: Session, therapist_id: int, code: str) -> Client:
    normalised = normalise_code(code)
    client = (
        session.scalar(select(Client).where(Client.therapist_id == therapist_id, Client.code == normalised))
        if normalised
        else None
    )
    if client is None:
        raise UnknownClient("unknown client code")
    return client


def _active_client_by_code(session: Session, therapist_id: int, code: str) -> Client:
    client = _client_by_code(session, therapist_id, code)
    if client.archived_at is not None:
        raise ClientsError("that client is archived; restore it before assigning sessions")
    return client


def _client_view(store: Store, session: Session, client: Client, reveal: bool) -> ClientView:
    details = _open_details(store, session, client) if reveal else None
    return ClientView(
        id=client.id,
        code=client.code,
        archived_at=client.archived_at,
        created_at=client.created_at,
        details=details,
        erased=reveal and details is None,
    )


# -- clients ------------------------------------------------------------------------------------


def create_client(
    store: Store,
    therapist_id: int,
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    timezone: str | None = None,
    modality: str | Modality | None = None,
    language: str | None = None,
    code: str | None = None,
    code_generator: Callable[[int], str] = generate_code,
    actor: Actor | None = None,
) -> ClientView:
    """Create a client with a random code (or ``code``, when the practice already has one).

    With an e-mail, occurrences already mirrored with it among their attendees become sessions.
    """
    details = ClientDetails(
        name=_clean_text(name, "name", 200),
        email=_clean_email(email),
        phone=_clean_phone(phone),
        timezone=_clean_timezone(timezone),
        modality=parse_modality(modality),
        language=parse_language(language),
    )
    chosen: str | None = None
    if code is not None:
        chosen = normalise_code(code)
        if chosen is None or len(chosen) < DEFAULT_LENGTH:
            raise InvalidClientData(
                f"a client code has {DEFAULT_LENGTH} to {MAX_LENGTH} characters from 2-9 and A-Z without I, L, O",
                "code",
            )
    _ensure_therapist_key(store, therapist_id)
    length = DEFAULT_LENGTH
    attempts = 0
    while True:
        candidate = chosen or code_generator(length)
        try:
            view = _insert_client(store, therapist_id, candidate, details, actor)
        except IntegrityError:
            view = None  # another writer took the same code between our check and our insert
        if view is not None:
            if details.email:
                apply_rules_for_therapist(store, therapist_id)
            return view
        if chosen is not None:
            raise ClientCodeTaken("that client code is already in use", "code")
        attempts += 1
        if attempts % CODE_ATTEMPTS_PER_LENGTH == 0:
            # A therapist with many clients (or a very unlucky draw): widen the code space.
            length += 1
            if length > MAX_LENGTH:
                raise ClientsError("could not find a free client code")


def _ensure_therapist_key(store: Store, therapist_id: int) -> None:
    """Create (and commit) the therapist's data key before any transaction that may roll back.

    The keyring caches a key as soon as it is created; were its row rolled back with a clashing
    insert, later ciphertexts would be sealed under a key that was never stored.
    """
    with store.session() as session:
        _require_therapist(session, therapist_id)
        store.keyring.cipher(session, Owner("therapist", therapist_id))


def _insert_client(
    store: Store, therapist_id: int, code: str, details: ClientDetails, actor: Actor | None = None
) -> ClientView | None:
    """Insert a client with ``code``; None when the code is taken."""
    with store.session() as session:
        _require_therapist(session, therapist_id)
        taken = session.scalar(select(Client.id).where(Client.therapist_id == therapist_id, Client.code == code))
        if taken is not None:
            return None
        client = Client(therapist_id=therapist_id, code=code, details=b"")
        if details.email:
            client.email_index = _email_index(store, session, therapist_id, details.email)
        session.add(client)
        session.flush()  # the id binds the ciphertext to this row
        _seal_details(store, session, client, details)
        session.flush()
        if actor is not None:  # the audit log of client records (core.audit), in the same transaction
            record(session, actor, "create", "client", client.id, client_id=client.id)
        log.info("client %d created for therapist %d", client.id, therapist_id)
        return ClientView(client.id, client.code, None, client.created_at, details)


def _audit_reveal(store: Store, actor: Actor | None, client_ids: Sequence[int], action: str = "list") -> None:
    """Record that client details were shown (in its own transaction, after the read)."""
    if actor is None or not client_ids:
        return
    ids = sorted(set(client_ids))
    with store.session() as session:
        record(
            session,
            actor,
            action,
            "client",
            ids[0] if len(ids) == 1 else None,
            client_id=ids[0] if len(ids) == 1 else None,
            detail={"client_ids": ids, "details": True},
        )


def get_client(
    store: Store, therapist_id: int, code: str, *, reveal: bool = False, actor: Actor | None = None
) -> ClientView:
    """The client with ``code``; its details only when ``reveal`` (audited when an ``actor`` is given)."""
    with store.session() as session:
        view = _client_view(store, session, _client_by_code(session, therapist_id, code), reveal)
    if reveal:
        _audit_reveal(store, actor, [view.id], "read")
    return view


def list_clients(
    store: Store,
    therapist_id: int,
    *,
    include_archived: bool = False,
    reveal: bool = False,
    actor: Actor | None = None,
) -> list[ClientView]:
    """The therapist's clients by code; details only when ``reveal`` (audited when an ``actor`` is given)."""
    query = select(Client).where(Client.therapist_id == therapist_id).order_by(Client.code)
    if not include_archived:
        query = query.where(Client.archived_at.is_(None))
    with store.session() as session:
        views = [_client_view(store, session, c, reveal) for c in session.scalars(query)]
    if reveal:
        _audit_reveal(store, actor, [v.id for v in views])
    return views


def update_client(
    store: Store,
    therapist_id: int,
    code: str,
    *,
    name: str | EllipsisType | None = ...,
    email: str | EllipsisType | None = ...,
    phone: str | EllipsisType | None = ...,
    timezone: str | EllipsisType | None = ...,
    modality: str | Modality | EllipsisType | None = ...,
    language: str | EllipsisType | None = ...,
    actor: Actor | None = None,
) -> ClientView:
    """Change some details (``...`` leaves a field as it is, None clears it); returns the revealed view.

    A new e-mail applies the attendee rule to the occurrences already mirrored.
    """
    _ensure_therapist_key(store, therapist_id)
    with store.session() as session:
        client = _client_by_code(session, therapist_id, code)
        current = _open_details(store, session, client)
        if current is None:
            raise ClientsError("this client's details were erased")
        new = ClientDetails(
            name=current.name if isinstance(name, EllipsisType) else _clean_text(name, "name", 200),
            email=current.email if isinstance(email, EllipsisType) else _clean_email(email),
            phone=current.phone if isinstance(phone, EllipsisType) else _clean_phone(phone),
            timezone=current.timezone if isinstance(timezone, EllipsisType) else _clean_timezone(timezone),
            modality=current.modality if isinstance(modality, EllipsisType) else parse_modality(modality),
            language=current.language if isinstance(language, EllipsisType) else parse_language(language),
        )
        _seal_details(store, session, client, new)
        client.email_index = _email_index(store, session, therapist_id, new.email) if new.email else None
        client.updated_at = datetime.now(UTC)
        if actor is not None:
            record(session, actor, "update", "client", client.id, client_id=client.id)
        log.info("client %d updated", client.id)
        view = _client_view(store, session, client, reveal=True)
    if new.email and new.email != current.email:
        apply_rules_for_therapist(store, therapist_id)
    return view


def archive_client(
    store: Store, therapist_id: int, code: str, *, archived: bool = True, actor: Actor | None = None
) -> ClientView:
    """Archive (or restore) a client: rules and series assignments stop assigning it new sessions."""
    with store.session() as session:
        client = _client_by_code(session, therapist_id, code)
        if archived and client.archived_at is None:
            client.archived_at = datetime.now(UTC)
        elif not archived:
            client.archived_at = None
        client.updated_at = datetime.now(UTC)
        if actor is not None:
            record(session, actor, "update", "client", client.id, client_id=client.id, detail={"archived": archived})
        log.info("client %d %s", client.id, "archived" if archived else "restored")
        view = _client_view(store, session, client, reveal=False)
        has_email = client.email_index is not None
    if not archived and has_email:
        apply_rules_for_therapist(store, therapist_id)
    return view


# -- finding events -----------------------------------------------------------------------------


def _connection_filter(connection: str | int | None) -> list[Any]:
    if connection is None:
        return []
    text = str(connection)
    # Ids are 32-bit integers; a longer run of digits can only be a name (and would overflow the driver).
    if text.isdigit() and int(text) < 2**31:
        return [or_(Connection.name == text, Connection.id == int(text))]
    return [Connection.name == text]


def find_series(store: Store, therapist_id: int, uid: str, *, connection: str | int | None = None) -> int:
    """The id of the one connection of this therapist that holds event ``uid``."""
    query = (
        select(Connection.id, Connection.name)
        .join(Occurrence, Occurrence.connection_id == Connection.id)
        .where(
            Connection.therapist_id == therapist_id,
            Connection.removed_at.is_(None),
            Occurrence.ical_uid == uid,
            *_connection_filter(connection),
        )
        .distinct()
        .order_by(Connection.name)
    )
    with store.session() as session:
        found = session.execute(query).all()
    if not found:
        where = f" in connection {str(connection)!r}" if connection is not None else ""
        raise UnknownEvent(f"no event with UID {uid!r}{where}")
    if len(found) > 1:
        names = [name for _, name in found]
        raise AmbiguousEvent(f"event {uid!r} is in several connections ({', '.join(names)}); choose one", names)
    connection_id: int = found[0][0]
    return connection_id


def find_occurrence(
    store: Store,
    therapist_id: int,
    uid: str,
    at: datetime | date,
    *,
    connection: str | int | None = None,
) -> int:
    """The occurrence of event ``uid`` whose original start (RECURRENCE-ID) or current start is ``at``.

    ``at`` is an aware instant, or a date for an all-day occurrence. The original start wins
    over the current one, so a moved instance is found by either.
    """
    connection_id = find_series(store, therapist_id, uid, connection=connection)
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("find_occurrence needs an aware datetime")
        recurrence_id = recurrence_id_for(at)
        starts_then = and_(Occurrence.all_day.is_(False), Occurrence.start_utc == at.astimezone(UTC))
    else:
        recurrence_id = at.isoformat()
        starts_then = and_(Occurrence.all_day.is_(True), Occurrence.start_utc == datetime.combine(at, time(), UTC))
    query = select(Occurrence.id, Occurrence.recurrence_id).where(
        Occurrence.connection_id == connection_id,
        Occurrence.ical_uid == uid,
        or_(Occurrence.recurrence_id == recurrence_id, starts_then),
    )
    with store.session() as session:
        rows = session.execute(query.order_by(Occurrence.id)).all()
    if not rows:
        raise OccurrenceNotFound(f"event {uid!r} has no occurrence at {at.isoformat()}")
    by_original = [row_id for row_id, rid in rows if rid == recurrence_id]
    occurrence_id: int = (by_original or [rows[0][0]])[0]
    return occurrence_id


# -- assigning ----------------------------------------------------------------------------------


def _occurrence_content(store: Store, session: Session, occ: Occurrence, therapist_id: int) -> OccurrenceContent:
    cipher = store.keyring.cipher_for_blob(session, Owner("therapist", therapist_id), occ.content)
    return unseal(cipher, occ.connection_id, OccurrenceKey(occ.ical_uid, occ.recurrence_id), occ.content)


class _Modalities:
    """Default modality of new sessions, decrypting each client and occurrence at most once."""

    def __init__(self, store: Store, session: Session) -> None:
        self.store = store
        self.session = session
        self._clients: dict[int, Modality | None] = {}

    def client_preference(self, client: Client) -> Modality | None:
        if client.id not in self._clients:
            details = _open_details(self.store, self.session, client)
            self._clients[client.id] = details.modality if details else None
        return self._clients[client.id]

    def default(
        self, client: Client, occ: Occurrence, therapist_id: int, content: OccurrenceContent | None
    ) -> Modality:
        preferred = self.client_preference(client)
        if preferred is not None:
            return preferred
        if content is None:
            content = _occurrence_content(self.store, self.session, occ, therapist_id)
        return Modality.ONLINE if content.video_url else Modality.IN_PERSON


def _put_session(
    session: Session,
    existing: TherapySession | None,
    occ: Occurrence,
    client: Client,
    source: SessionSource,
    modality: Callable[[], Modality],
    now: datetime,
) -> TherapySession | None:
    """Create or re-point the session of ``occ``; None when nothing changed.

    A session keeps its id (and everything hung off it) when it changes client or source.
    """
    if existing is None:
        row = TherapySession(
            occurrence_id=occ.id,
            client_id=client.id,
            modality=modality().value,
            source=source.value,
            created_at=now,
            updated_at=now,
        )
        session.add(row)
        session.flush()
        emit_session_event(session, SESSION_ASSIGNED, row.id, occ, client_id=client.id, modality=row.modality)
        log.info("session %d: occurrence %d assigned to client %d (%s)", row.id, occ.id, client.id, source.value)
        return row
    if existing.client_id == client.id and existing.source == source.value:
        return None
    if existing.client_id != client.id:
        existing.modality = modality().value
        existing.client_id = client.id
        emit_session_event(session, SESSION_ASSIGNED, existing.id, occ, client_id=client.id, modality=existing.modality)
    existing.source = source.value
    existing.updated_at = now
    log.info("session %d: occurrence %d assigned to client %d (%s)", existing.id, occ.id, client.id, source.value)
    return existing


def _therapist_occurrence(session: Session, therapist_id: int, occurrence_id: int) -> Occurrence:
    occ = session.scalar(
        select(Occurrence)
        .join(Connection, Connection.id == Occurrence.connection_id)
        .where(
            Occurrence.id == occurrence_id,
            Connection.therapist_id == therapist_id,
            Connection.removed_at.is_(None),
        )
    )
    if occ is None:
        raise OccurrenceNotFound(f"no occurrence with id {occurrence_id}")
    return occ


def assign_occurrence(
    store: Store,
    therapist_id: int,
    occurrence_id: int,
    client_code: str,
    *,
    modality: str | Modality | None = None,
) -> SessionView:
    """Make one occurrence a session of the client (``manual``: no series or rule overrides it)."""
    chosen = parse_modality(modality)

    def run() -> int:
        with store.session() as session:
            client = _active_client_by_code(session, therapist_id, client_code)
            occ = _therapist_occurrence(session, therapist_id, occurrence_id)
            existing = session.scalar(select(TherapySession).where(TherapySession.occurrence_id == occ.id))
            modalities = _Modalities(store, session)
            row = _put_session(
                session,
                existing,
                occ,
                client,
                SessionSource.MANUAL,
                lambda: chosen or modalities.default(client, occ, therapist_id, None),
                datetime.now(UTC),
            )
            row = row or existing
            if row is None:  # pragma: no cover - _put_session returns a row when there was none
                raise RuntimeError("no session after assigning")
            if chosen is not None and row.modality != chosen.value:
                row.modality = chosen.value
                emit_session_event(session, SESSION_MODALITY_CHANGED, row.id, occ, modality=row.modality)
            return row.id

    session_id = _retrying(run)
    return get_session(store, therapist_id, session_id)


def assign_series(
    store: Store,
    therapist_id: int,
    connection_id: int,
    uid: str,
    client_code: str,
    *,
    from_start: datetime | None = None,
) -> SeriesAssignmentView:
    """Assign the series ``uid`` to the client from ``from_start`` (default: now) on.

    Occurrences already mirrored that start then or later become ``series`` sessions now; those
    a later sync creates follow through :func:`apply_rules`. Manual sessions are left alone.
    A newer series assignment of the same series wins over an older one from its own start on.
    """
    from_start = (from_start or datetime.now(UTC)).astimezone(UTC)

    def run() -> SeriesAssignmentView:
        with store.session() as session:
            client = _active_client_by_code(session, therapist_id, client_code)
            owner = session.scalar(
                select(Connection.therapist_id).where(Connection.id == connection_id, Connection.removed_at.is_(None))
            )
            if owner != therapist_id:
                raise UnknownEvent(f"no connection with id {connection_id}")
            exists = session.scalar(
                select(Occurrence.id)
                .where(Occurrence.connection_id == connection_id, Occurrence.ical_uid == uid)
                .limit(1)
            )
            if exists is None:
                raise UnknownEvent(f"no event with UID {uid!r}")
            # Assigning the same series to the same client again ("alliance assign" run twice)
            # reuses the assignment in force instead of piling up rows.
            in_force = session.scalar(
                select(SeriesAssignment)
                .where(
                    SeriesAssignment.connection_id == connection_id,
                    SeriesAssignment.ical_uid == uid,
                    SeriesAssignment.from_start <= from_start,
                )
                .order_by(SeriesAssignment.from_start.desc(), SeriesAssignment.id.desc())
                .limit(1)
            )
            later = session.scalar(
                select(SeriesAssignment.id)
                .where(
                    SeriesAssignment.connection_id == connection_id,
                    SeriesAssignment.ical_uid == uid,
                    SeriesAssignment.from_start > from_start,
                )
                .limit(1)
            )
            if in_force is not None and in_force.client_id == client.id and later is None:
                assignment = in_force
            else:
                assignment = SeriesAssignment(
                    connection_id=connection_id, ical_uid=uid, client_id=client.id, from_start=from_start
                )
                session.add(assignment)
                session.flush()
                log.info("series assignment %d: connection %d -> client %d", assignment.id, connection_id, client.id)
            occurrences = list(
                session.scalars(
                    select(Occurrence).where(
                        Occurrence.connection_id == connection_id,
                        Occurrence.ical_uid == uid,
                        Occurrence.start_utc >= from_start,
                    )
                )
            )
            existing = _sessions_of(session, [o.id for o in occurrences])
            modalities = _Modalities(store, session)
            now = datetime.now(UTC)
            assigned = 0
            for occ in occurrences:
                current = existing.get(occ.id)
                if current is not None and current.source == SessionSource.MANUAL.value:
                    continue
                _put_session(
                    session,
                    current,
                    occ,
                    client,
                    SessionSource.SERIES,
                    partial(modalities.default, client, occ, therapist_id, None),
                    now,
                )
                assigned += 1
            return SeriesAssignmentView(
                assignment.id, connection_id, uid, client.id, client.code, assignment.from_start, assigned
            )

    return _retrying(run)


def assign_event(
    store: Store,
    therapist_id: int,
    uid: str,
    client_code: str,
    *,
    occurrence: datetime | date | None = None,
    connection: str | int | None = None,
    from_start: datetime | None = None,
    modality: str | Modality | None = None,
) -> AssignResult:
    """Assign by UID, as ``alliance assign`` does.

    With ``occurrence``: that one occurrence. Without: the whole series from ``from_start``
    (default now) on, present and future instances; a single (non-recurring) event is assigned
    as one occurrence whatever its time, since "from now on" would skip a past one.
    """
    _require_client(store, therapist_id, client_code)  # an unknown code fails before the UID is looked at
    if occurrence is not None:
        occurrence_id = find_occurrence(store, therapist_id, uid, occurrence, connection=connection)
        single = assign_occurrence(store, therapist_id, occurrence_id, client_code, modality=modality)
        return AssignResult(session=single)
    connection_id = find_series(store, therapist_id, uid, connection=connection)
    with store.session() as session:
        keys = session.execute(
            select(Occurrence.id, Occurrence.recurrence_id).where(
                Occurrence.connection_id == connection_id, Occurrence.ical_uid == uid
            )
        ).all()
    if len(keys) == 1 and keys[0][1] == "":
        return AssignResult(session=assign_occurrence(store, therapist_id, keys[0][0], client_code, modality=modality))
    return AssignResult(
        series=assign_series(store, therapist_id, connection_id, uid, client_code, from_start=from_start)
    )


def _require_client(store: Store, therapist_id: int, code: str) -> None:
    with store.session() as session:
        _active_client_by_code(session, therapist_id, code)


def set_session_modality(store: Store, therapist_id: int, session_id: int, modality: str | Modality) -> SessionView:
    """Override the modality of one session."""
    chosen = parse_modality(modality)
    if chosen is None:
        raise InvalidClientData("modality must be 'online' or 'in_person'", "modality")
    with store.session() as session:
        query = _scoped_sessions(therapist_id).where(TherapySession.id == session_id)
        row: TherapySession | None = session.scalar(query)
        if row is None:
            raise UnknownSession(f"no session with id {session_id}")
        if row.modality != chosen.value:
            row.modality = chosen.value
            row.updated_at = datetime.now(UTC)
            occ = session.get(Occurrence, row.occurrence_id)
            if occ is not None:
                emit_session_event(session, SESSION_MODALITY_CHANGED, row.id, occ, modality=row.modality)
    return get_session(store, therapist_id, session_id)


# -- rules (the job runner's entry points) ------------------------------------------------------


def _sessions_of(session: Session, occurrence_ids: Iterable[int]) -> dict[int, TherapySession]:
    ids = list(occurrence_ids)
    found: dict[int, TherapySession] = {}
    for chunk in _chunks(ids):
        for row in session.scalars(select(TherapySession).where(TherapySession.occurrence_id.in_(chunk))):
            found[row.occurrence_id] = row
    return found


def apply_rules(
    store: Store, occurrence_ids: Iterable[int], *, therapist_id: int | None = None, session: Session | None = None
) -> int:
    """Turn occurrences matching a series assignment or the attendee rule into sessions.

    Idempotent; never overrides a manual assignment, never removes a session. Each occurrence is
    matched against its own therapist's clients only (and, given ``therapist_id``, occurrences of
    other therapists are ignored). Returns how many sessions were created or re-assigned.
    ``session``: written through the caller's transaction (an outbox delivery's: the sessions and
    their events commit with its "done" mark, one transaction less), each chunk in a savepoint
    so a lost race on a unique constraint is retried without undoing the caller's work.
    """
    ids = sorted(set(occurrence_ids))
    changed = 0
    for chunk in _chunks(ids):
        if session is None:
            changed += _retrying(partial(_apply_rules_chunk, store, chunk, therapist_id))
        else:
            changed += _retrying(partial(_apply_rules_savepoint, store, session, chunk, therapist_id))
    return changed


def _apply_rules_chunk(store: Store, ids: Sequence[int], only_therapist: int | None) -> int:
    with store.session() as session:
        return _apply_rules_in(store, session, ids, only_therapist)


def _apply_rules_savepoint(store: Store, session: Session, ids: Sequence[int], only_therapist: int | None) -> int:
    with session.begin_nested():
        return _apply_rules_in(store, session, ids, only_therapist)


def _apply_rules_in(store: Store, session: Session, ids: Sequence[int], only_therapist: int | None) -> int:
    query = (
        select(Occurrence, Connection.therapist_id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        # A removed calendar's occurrences are no longer matched (its sessions may have moved
        # to the calendar connected again: a late event must not make new ones behind them).
        .where(Occurrence.id.in_(ids), Connection.removed_at.is_(None))
    )
    if only_therapist is not None:
        query = query.where(Connection.therapist_id == only_therapist)
    rows: list[tuple[Occurrence, int]] = [(o, t) for o, t in session.execute(query)]
    if not rows:
        return 0
    existing = _sessions_of(session, [o.id for o, _ in rows])
    # Series assignments of these series whose client is active and the occurrence's therapist's.
    assignments: dict[tuple[int, str], list[tuple[SeriesAssignment, Client]]] = {}
    pairs = {(o.connection_id, o.ical_uid) for o, _ in rows}
    found = session.execute(
        select(SeriesAssignment, Client)
        .join(Client, Client.id == SeriesAssignment.client_id)
        .join(Connection, Connection.id == SeriesAssignment.connection_id)
        .where(
            SeriesAssignment.connection_id.in_({c for c, _ in pairs}),
            SeriesAssignment.ical_uid.in_({u for _, u in pairs}),
            Client.archived_at.is_(None),
            Client.therapist_id == Connection.therapist_id,
        )
    )
    for assignment, client in found:
        key = (assignment.connection_id, assignment.ical_uid)
        if key in pairs:
            assignments.setdefault(key, []).append((assignment, client))
    waiting = _orphan_twins(
        session, [o for o, _ in rows if o.id not in existing and (o.connection_id, o.ical_uid) in assignments]
    )
    modalities = _Modalities(store, session)
    now = datetime.now(UTC)
    changed = 0
    unassigned: list[tuple[Occurrence, int]] = []
    for occ, therapist_id in rows:
        current = existing.get(occ.id)
        if current is not None and current.source == SessionSource.MANUAL.value:
            continue  # the therapist's own choice for this occurrence
        series_client = _series_client(assignments.get((occ.connection_id, occ.ical_uid), []), occ.start_utc)
        if series_client is not None and current is None and occ.id in waiting:
            continue  # its orphaned session (and notes) is re-linked onto it (core.notes.orphans)
        if series_client is not None:
            row = _put_session(
                session,
                current,
                occ,
                series_client,
                SessionSource.SERIES,
                partial(modalities.default, series_client, occ, therapist_id, None),
                now,
            )
            changed += row is not None
        elif current is None:
            unassigned.append((occ, therapist_id))
        # else: rules add sessions; they never take one away or move it to another client
    for occ, therapist_id, client, content in _attendee_matches(store, session, unassigned):
        row = _put_session(
            session,
            None,
            occ,
            client,
            SessionSource.RULE,
            partial(modalities.default, client, occ, therapist_id, content),
            now,
        )
        changed += row is not None
    return changed


def _orphan_twins(session: Session, occurrences: Sequence[Occurrence]) -> set[int]:
    """Ids of ``occurrences`` whose identity (iCalUID, original start) had a session on a removed
    connection of the same therapist: a calendar connected again, whose orphaned session (with its
    notes) the re-link handler moves onto the live occurrence."""
    if not occurrences:
        return set()
    live = aliased(Connection)
    old_occ = aliased(Occurrence)
    old_conn = aliased(Connection)
    found = session.scalars(
        select(Occurrence.id)
        .join(live, live.id == Occurrence.connection_id)
        .join(old_occ, (old_occ.ical_uid == Occurrence.ical_uid) & (old_occ.recurrence_id == Occurrence.recurrence_id))
        .join(old_conn, old_conn.id == old_occ.connection_id)
        .join(TherapySession, TherapySession.occurrence_id == old_occ.id)
        .where(
            Occurrence.id.in_([o.id for o in occurrences]),
            old_conn.therapist_id == live.therapist_id,
            old_conn.removed_at.is_not(None),
        )
    )
    return set(found)


def _series_client(candidates: list[tuple[SeriesAssignment, Client]], start: datetime) -> Client | None:
    """The client of the newest assignment in force at ``start`` (latest ``from_start``, then latest id)."""
    in_force = [(a.from_start, a.id, c) for a, c in candidates if a.from_start <= start]
    if not in_force:
        return None
    return max(in_force, key=lambda item: (item[0], item[1]))[2]


def _attendee_matches(
    store: Store, session: Session, occurrences: list[tuple[Occurrence, int]]
) -> Iterator[tuple[Occurrence, int, Client, OccurrenceContent]]:
    """Occurrences whose attendees include the e-mail of exactly one active client of their therapist.

    None for several matches: a couple or family sharing a session is the therapist's call.
    Batched: one client query per therapist, and no decryption at all for a therapist without
    any client e-mail (the common case on every sync).
    """
    by_therapist: dict[int, list[Occurrence]] = {}
    for occ, therapist_id in occurrences:
        by_therapist.setdefault(therapist_id, []).append(occ)
    for therapist_id, occs in by_therapist.items():
        has_emails = session.scalar(
            select(Client.id)
            .where(Client.therapist_id == therapist_id, Client.email_index.is_not(None), Client.archived_at.is_(None))
            .limit(1)
        )
        if has_emails is None:
            continue
        key = _index_key(store, session, therapist_id)
        wanted: list[tuple[Occurrence, OccurrenceContent, set[str]]] = []
        for occ in occs:
            content = _occurrence_content(store, session, occ, therapist_id)
            emails = {e for e in (normalise_email(a) for a in content.attendees) if e}
            if emails:
                wanted.append((occ, content, {_blind(key, e) for e in emails}))
        all_indexes = sorted(set().union(*(indexes for _, _, indexes in wanted)))
        clients_by_index: dict[str, list[Client]] = {}
        for i in range(0, len(all_indexes), _CHUNK):
            for client in session.scalars(
                select(Client).where(
                    Client.therapist_id == therapist_id,
                    Client.email_index.in_(all_indexes[i : i + _CHUNK]),
                    Client.archived_at.is_(None),
                )
            ):
                clients_by_index.setdefault(client.email_index or "", []).append(client)
        for occ, content, indexes in wanted:
            matches = {c.id: c for index in indexes for c in clients_by_index.get(index, [])}
            if len(matches) == 1:
                yield occ, therapist_id, next(iter(matches.values())), content
            elif matches:
                log.info("occurrence %d matches %d clients by attendee e-mail; left unassigned", occ.id, len(matches))


def apply_rules_for_therapist(store: Store, therapist_id: int) -> int:
    """Apply the rules to every occurrence of the therapist that is no session yet.

    Run when a client gets an e-mail (or is restored), so events already mirrored with that
    attendee become sessions without waiting for them to change at the source.
    """
    with store.session() as session:
        ids = list(
            session.scalars(
                select(Occurrence.id)
                .join(Connection, Connection.id == Occurrence.connection_id)
                .outerjoin(TherapySession, TherapySession.occurrence_id == Occurrence.id)
                .where(
                    Connection.therapist_id == therapist_id,
                    Connection.removed_at.is_(None),
                    TherapySession.id.is_(None),
                )
            )
        )
    return apply_rules(store, ids, therapist_id=therapist_id)


def handle_outbox_event(store: Store, kind: str, occurrence_id: int | None, session: Session | None = None) -> int:
    """Outbox consumer: apply the rules to the occurrence of a created/restored/updated/rescheduled event.

    Safe to call more than once per event. A reschedule keeps its session by identity; it is
    handled only because the new start may now fall under a series assignment. Cancellations
    change nothing: the session stays and shows the occurrence's cancelled status. ``session``:
    the delivery's, which the rules then write through (see :func:`apply_rules`).
    """
    if kind not in RULE_EVENTS or occurrence_id is None:
        return 0
    if not store.read_rows(_RULES_MAY_APPLY, {"occurrence_id": occurrence_id}, through=session):
        return 0
    return apply_rules(store, [occurrence_id], session=session)


# A rule needs a series assignment of the occurrence's series or a client with an e-mail address
# (the attendee rule): without either nothing can change, whatever sessions exist. A first mirror
# asks this once per new occurrence, mostly of therapists who have neither yet (one statement
# instead of the rules' four and a savepoint).
_RULES_MAY_APPLY = (
    select(Occurrence.id)
    .join(Connection, Connection.id == Occurrence.connection_id)
    .where(
        Occurrence.id == bindparam("occurrence_id"),
        Connection.removed_at.is_(None),
        or_(
            exists().where(
                SeriesAssignment.connection_id == Occurrence.connection_id,
                SeriesAssignment.ical_uid == Occurrence.ical_uid,
            ),
            exists().where(
                Client.therapist_id == Connection.therapist_id,
                Client.email_index.is_not(None),
                Client.archived_at.is_(None),
            ),
        ),
    )
)


# -- reading sessions ---------------------------------------------------------------------------


def _scoped_sessions(therapist_id: int) -> Select[Any]:
    return (
        select(TherapySession)
        .join(Client, Client.id == TherapySession.client_id)
        .where(Client.therapist_id == therapist_id)
    )


def list_sessions(
    store: Store,
    therapist_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    client_code: str | None = None,
    include_cancelled: bool = True,
    reveal: bool = False,
    session_ids: Sequence[int] | None = None,
    occurrence_ids: Sequence[int] | None = None,
    actor: Actor | None = None,
) -> list[SessionView]:
    """Sessions whose occurrence overlaps ``[start, end)``, by start; client details only when ``reveal``."""
    query = (
        select(TherapySession, Occurrence, Client, Connection.name)
        .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
        .join(Client, Client.id == TherapySession.client_id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        .where(Client.therapist_id == therapist_id, Connection.therapist_id == therapist_id)
    )
    if start is not None:
        query = query.where(Occurrence.end_utc > start)
    if end is not None:
        query = query.where(Occurrence.start_utc < end)
    if not include_cancelled:
        query = query.where(Occurrence.status != Status.CANCELLED.value)
    if session_ids is not None:
        query = query.where(TherapySession.id.in_(list(session_ids)))
    if occurrence_ids is not None:
        query = query.where(TherapySession.occurrence_id.in_(list(occurrence_ids)))
    with store.session() as session:
        if client_code is not None:
            query = query.where(Client.id == _client_by_code(session, therapist_id, client_code).id)
        rows = session.execute(query.order_by(Occurrence.start_utc, TherapySession.id)).all()
        details: dict[int, ClientDetails | None] = {}
        views = []
        for s, o, c, connection_name in rows:
            if reveal and c.id not in details:
                details[c.id] = _open_details(store, session, c)
            views.append(
                SessionView(
                    id=s.id,
                    occurrence_id=o.id,
                    client_id=c.id,
                    client_code=c.code,
                    modality=Modality(s.modality),
                    source=SessionSource(s.source),
                    status=Status(o.status),
                    start=o.start_utc,
                    end=o.end_utc,
                    all_day=o.all_day,
                    timezone=o.timezone,
                    uid=o.ical_uid,
                    recurrence_id=o.recurrence_id,
                    connection_id=o.connection_id,
                    connection=connection_name,
                    created_at=s.created_at,
                    updated_at=s.updated_at,
                    client=details.get(c.id) if reveal else None,
                )
            )
    if reveal:
        _audit_reveal(store, actor, list(details))
    return views


def get_session(
    store: Store, therapist_id: int, session_id: int, *, reveal: bool = False, actor: Actor | None = None
) -> SessionView:
    """One session of this therapist."""
    found = list_sessions(store, therapist_id, session_ids=[session_id], reveal=reveal, actor=actor)
    if not found:
        raise UnknownSession(f"no session with id {session_id}")
    return found[0]


def session_for_occurrence(
    store: Store, therapist_id: int, occurrence_id: int, *, reveal: bool = False
) -> SessionView | None:
    """The session of an occurrence, or None when the occurrence is no session (or not this therapist's)."""
    found = list_sessions(store, therapist_id, occurrence_ids=[occurrence_id], reveal=reveal)
    return found[0] if found else None


__all__ = [
    "RULE_EVENTS",
    "AmbiguousEvent",
    "AssignResult",
    "ClientCodeTaken",
    "ClientDetails",
    "ClientView",
    "ClientsError",
    "InvalidClientData",
    "OccurrenceNotFound",
    "SeriesAssignmentView",
    "SessionView",
    "UnknownClient",
    "UnknownEvent",
    "UnknownSession",
    "apply_rules",
    "apply_rules_for_therapist",
    "archive_client",
    "assign_event",
    "assign_occurrence",
    "assign_series",
    "create_client",
    "find_occurrence",
    "find_series",
    "get_client",
    "get_session",
    "handle_outbox_event",
    "list_clients",
    "list_sessions",
    "parse_language",
    "parse_modality",
    "session_for_occurrence",
    "set_session_modality",
    "update_client",
]
