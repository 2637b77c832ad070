"""Session notes: write, version, sign and read them, encrypted under the client's data key.

Every function takes an :class:`core.audit.Actor` and is scoped to its therapist: a session or
note of another therapist is unknown (the API answers 404), and psychotherapy (process) notes are
visible to their author only. Every create, read, update and sign appends an audit entry in the
same transaction as the change; a decryption failure is audited in its own transaction (the read
itself changed nothing) and then raised as :class:`NoteUnreadable`.

Bodies are AES-256-GCM under the client's data key (wrapped by the therapist's, wrapped by the
master key: ``core.crypto``); the associated data binds therapist, client, session, note and
version, so a ciphertext copied to another row, version or note fails to decrypt.
Log lines carry ids only, never text.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.orm import Session

from core.audit import Actor, record
from core.clients.models import Client, TherapySession
from core.crypto import DecryptionError, KeyDestroyed, MasterKeyError, Owner
from core.crypto.models import DataKey
from core.notes.models import Note, NoteKind, NoteVersion
from core.store.db import Store
from core.store.models import Connection, Occurrence
from core.sync.types import Status

log = logging.getLogger(__name__)

MAX_NOTE_BYTES = 64 * 1024  # UTF-8 bytes of one version's Markdown text
_NOTES: Table = Note.__table__  # type: ignore[assignment]
_VERSIONS: Table = NoteVersion.__table__  # type: ignore[assignment]
# The write path's statements, built once (SQLAlchemy reuses their cache keys and compiled forms).
_FIND_SESSION = (
    select(TherapySession.id, Client.id, DataKey.wrapped.is_(None))
    .join(Client, Client.id == TherapySession.client_id)
    .outerjoin(
        DataKey,
        (DataKey.owner_kind == "client") & (DataKey.owner_id == Client.id) & DataKey.superseded_at.is_(None),
    )
    .where(TherapySession.id == bindparam("session_id"), Client.therapist_id == bindparam("therapist_id"))
)
_INSERT_NOTE = _NOTES.insert().returning(_NOTES.c.id)
_INSERT_VERSION = _VERSIONS.insert()


# -- errors -------------------------------------------------------------------------------------


class NotesError(Exception):
    """A note request that cannot be done; the message is one line for a user and names no content."""


class SessionNotFound(NotesError, LookupError):
    """No such session of this therapist."""


class NoteNotFound(NotesError, LookupError):
    """No such note in this session visible to this therapist."""


class InvalidNote(NotesError, ValueError):
    """Empty text, an unknown kind, or text that is not valid Unicode."""


class NoteTooLarge(NotesError, ValueError):
    """The text is larger than :data:`MAX_NOTE_BYTES` (the API answers 413)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"a note may hold at most {MAX_NOTE_BYTES} bytes of text; this one has {size}")
        self.size = size


class NoteSigned(NotesError):
    """The note is signed (locked): no new version can be added."""


class VersionConflict(NotesError):
    """The note changed since the caller read it (``expected_version`` is stale)."""


class NoteUnreadable(NotesError):
    """A stored ciphertext does not decrypt for its row (tampered with or moved); audited."""


class ClientErased(NotesError):
    """The client's data key was destroyed (erasure): the notes are gone for good."""


# -- views --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VersionView:
    version: int
    created_at: datetime
    text: str


@dataclass(frozen=True, slots=True)
class NoteView:
    id: int
    session_id: int
    client_id: int
    author_id: int
    kind: NoteKind
    version: int
    text: str
    created_at: datetime
    updated_at: datetime
    signed_at: datetime | None
    # Every version, oldest first, when the caller asked for the history.
    history: tuple[VersionView, ...] = field(default=())


@dataclass(frozen=True, slots=True)
class SessionRef:
    """What a notes screen shows about the session: its time and whether its event still exists."""

    id: int
    client_id: int
    client_code: str
    start: datetime
    end: datetime
    status: Status
    # True when the event behind the session was deleted/cancelled in the calendar or the
    # calendar was disconnected: the session and its notes stay (DESIGN.md, "Identity").
    event_removed: bool


# -- helpers ------------------------------------------------------------------------------------


def body_context(therapist_id: int, client_id: int, session_id: int, note_id: int, version: int) -> str:
    """Associated data of one version's ciphertext: moving it anywhere else breaks decryption."""
    return f"notes.body|t{therapist_id}|c{client_id}|s{session_id}|n{note_id}|v{version}"


def _clean_text(text: str) -> bytes:
    if not isinstance(text, str):
        raise InvalidNote("a note's text must be text")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidNote("a note's text must be valid Unicode") from None
    if len(raw) > MAX_NOTE_BYTES:
        raise NoteTooLarge(len(raw))
    if not text or text.isspace():  # what ``not text.strip()`` says, without copying the text
        raise InvalidNote("a note needs some text")
    return raw


def parse_kind(value: str | NoteKind) -> NoteKind:
    if type(value) is NoteKind:
        return value
    try:
        return NoteKind(str(value).strip().lower())
    except ValueError:
        raise InvalidNote("a note's kind is 'progress' or 'process'") from None


def _session_of(session: Session, therapist_id: int, session_id: int) -> tuple[TherapySession, Client]:
    row = session.execute(
        select(TherapySession, Client)
        .join(Client, Client.id == TherapySession.client_id)
        .where(TherapySession.id == session_id, Client.therapist_id == therapist_id)
    ).first()
    if row is None:
        raise SessionNotFound(f"no session with id {session_id}")
    return row[0], row[1]


def _visible(note: Note, therapist_id: int) -> bool:
    # Process notes: their author only (45 CFR 164.501, clinical.md F). Progress notes: the
    # treating therapist, who is the author today; a practice with several roles adds them here.
    return note.author_id == therapist_id


def _note_of(session: Session, therapist_id: int, session_id: int, note_id: int) -> Note:
    note = session.get(Note, note_id)
    if note is None or note.session_id != session_id or not _visible(note, therapist_id):
        raise NoteNotFound(f"no note with id {note_id} in this session")
    return note


def _client_cipher_owner(note: Note) -> Owner:
    return Owner("client", note.client_id)


def _key_destroyed(session: Session, client_id: int) -> bool:
    """Asked of the database on every read: another process may have erased the client since this
    one cached its key, and an erasure must take effect at once everywhere."""
    wrapped_null = session.scalar(
        # The current key: an erasure destroys it (with every older one); a superseded key alone
        # may have been retired (core.crypto.retire) while the client lives on.
        select(DataKey.wrapped.is_(None)).where(
            DataKey.owner_kind == "client", DataKey.owner_id == client_id, DataKey.superseded_at.is_(None)
        )
    )
    return bool(wrapped_null)


def _seal(store: Store, session: Session, note: Note, version: int, raw: bytes) -> bytes:
    cipher = store.keyring.cipher(session, Owner("client", note.client_id), parent=Owner("therapist", note.author_id))
    return cipher.encrypt(raw, body_context(note.author_id, note.client_id, note.session_id, note.id, version))


def _open(store: Store, session: Session, note: Note, version: NoteVersion) -> str:
    context = body_context(note.author_id, note.client_id, note.session_id, note.id, version.version)
    return store.keyring.decrypt(session, _client_cipher_owner(note), version.body, context).decode("utf-8")


def _view(note: Note, text: str, history: Sequence[VersionView] = ()) -> NoteView:
    return NoteView(
        id=note.id,
        session_id=note.session_id,
        client_id=note.client_id,
        author_id=note.author_id,
        kind=NoteKind(note.kind),
        version=note.current_version,
        text=text,
        created_at=note.created_at,
        updated_at=note.updated_at,
        signed_at=note.signed_at,
        history=tuple(history),
    )


def _record_failure(store: Store, actor: Actor, note: Note, reason: str) -> None:
    with store.session() as session:
        record(session, actor, "decrypt_failed", "note", note.id, client_id=note.client_id, detail={"reason": reason})
    log.warning("note %d of session %d could not be decrypted (%s)", note.id, note.session_id, reason)


# -- reading ------------------------------------------------------------------------------------


def session_ref(store: Store, actor: Actor, session_id: int) -> SessionRef:
    """The session a notes screen is about (this therapist's only)."""
    with store.session() as session:
        row = session.execute(
            select(TherapySession, Client.code, Occurrence, Connection.removed_at)
            .join(Client, Client.id == TherapySession.client_id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(TherapySession.id == session_id, Client.therapist_id == actor.therapist_id)
        ).first()
        if row is None:
            raise SessionNotFound(f"no session with id {session_id}")
        s, code, occ, removed_at = row
        status = Status(occ.status)
        return SessionRef(
            id=s.id,
            client_id=s.client_id,
            client_code=code,
            start=occ.start_utc,
            end=occ.end_utc,
            status=status,
            event_removed=removed_at is not None or status is Status.CANCELLED,
        )


def _read_notes(
    store: Store, actor: Actor, notes: list[Note], *, target: tuple[str, int], history: bool = False
) -> list[NoteView]:
    """Decrypt the current version (or all versions) of ``notes``; audit once; raise on failure."""
    if actor.therapist_id is None:
        raise NoteNotFound("notes are read by their therapist only")
    failed: Note | None = None
    reason = ""
    wrong_key: MasterKeyError | None = None
    views: list[NoteView] = []
    with store.session() as session:
        # The audit entry first: its UPDATE of the chain head makes this a write transaction from
        # the start (SQLite cannot upgrade a read snapshot that a concurrent writer moved past).
        record(
            session,
            actor,
            "read" if len(notes) == 1 and target[0] == "note" else "list",
            target[0],
            target[1],
            client_id=notes[0].client_id if notes and len({n.client_id for n in notes}) == 1 else None,
            detail={"note_ids": [n.id for n in notes], "history": history},
        )
        erased = any(_key_destroyed(session, cid) for cid in {n.client_id for n in notes})
        ids = [] if erased else [n.id for n in notes]
        query = select(NoteVersion).where(NoteVersion.note_id.in_(ids)) if ids else None
        by_note: dict[int, list[NoteVersion]] = {}
        if query is not None:
            if not history:
                query = query.join(Note, Note.id == NoteVersion.note_id).where(
                    NoteVersion.version == Note.current_version
                )
            for v in session.scalars(query.order_by(NoteVersion.note_id, NoteVersion.version)):
                by_note.setdefault(v.note_id, []).append(v)
        for note in [] if erased else notes:
            versions = by_note.get(note.id, [])
            try:
                texts = [VersionView(v.version, v.created_at, _open(store, session, note, v)) for v in versions]
            except KeyDestroyed:
                erased = True
                break
            except (DecryptionError, UnicodeDecodeError):
                failed, reason = note, "tampered_or_moved"
                break
            except MasterKeyError as exc:
                # This process holds another master key than the one that wrapped the data keys:
                # nothing is served, and the refused read is audited like a tampered row.
                failed, reason, wrong_key = note, "wrong_master_key", exc
                break
            current = next((t.text for t in texts if t.version == note.current_version), None)
            if current is None:
                failed, reason = note, "version_missing"
                break
            views.append(_view(note, current, texts if history else ()))
    if erased:
        raise ClientErased("this client's notes were erased")
    if failed is not None:
        _record_failure(store, actor, failed, reason)
        if wrong_key is not None:
            raise wrong_key
        raise NoteUnreadable(
            f"note {failed.id} cannot be decrypted: its stored text does not belong to it "
            "(altered or moved in the database); the failure was recorded in the audit log"
        )
    return views


def list_notes(store: Store, actor: Actor, session_id: int, *, history: bool = False) -> list[NoteView]:
    """The session's notes visible to this therapist, oldest first, each with its current text
    (and every version with ``history``)."""
    with store.session() as session:
        _session_of(session, actor.therapist_id or 0, session_id)
        notes = list(
            session.scalars(
                select(Note)
                .where(Note.session_id == session_id, Note.author_id == actor.therapist_id)
                .order_by(Note.created_at, Note.id)
            )
        )
    return _read_notes(store, actor, notes, target=("session", session_id), history=history)


def get_note(store: Store, actor: Actor, session_id: int, note_id: int, *, history: bool = True) -> NoteView:
    """One note with its text and (by default) every earlier version."""
    with store.session() as session:
        _session_of(session, actor.therapist_id or 0, session_id)
        note = _note_of(session, actor.therapist_id or 0, session_id, note_id)
    return _read_notes(store, actor, [note], target=("note", note.id), history=history)[0]


def list_client_notes(
    store: Store,
    actor: Actor,
    client_id: int,
    *,
    kinds: Sequence[NoteKind] = (NoteKind.PROGRESS,),
    history: bool = False,
) -> list[NoteView]:
    """Every note of one client of this therapist of the given kinds (e.g. for an export), oldest first."""
    with store.session() as session:
        notes = list(
            session.scalars(
                select(Note)
                .join(Client, Client.id == Note.client_id)
                .where(
                    Note.client_id == client_id,
                    Client.therapist_id == actor.therapist_id,
                    Note.author_id == actor.therapist_id,
                    Note.kind.in_([k.value for k in kinds]),
                )
                .order_by(Note.created_at, Note.id)
            )
        )
    return _read_notes(store, actor, notes, target=("client", client_id), history=history)


# -- writing ------------------------------------------------------------------------------------


def create_note(
    store: Store, actor: Actor, session_id: int, text: str, kind: str | NoteKind = NoteKind.PROGRESS
) -> NoteView:
    """Write a new note (version 1) for a session of this therapist."""
    chosen = parse_kind(kind)
    raw = _clean_text(text)
    if actor.therapist_id is None:
        raise SessionNotFound(f"no session with id {session_id}")
    now = datetime.now(UTC)
    therapist_id = actor.therapist_id
    with store.session() as session:
        conn = session.connection()
        # One query: the session (scoped to this therapist), its client, whether the key is gone.
        found = conn.execute(_FIND_SESSION, {"session_id": session_id, "therapist_id": therapist_id}).first()
        if found is None:
            raise SessionNotFound(f"no session with id {session_id}")
        _, client_id, destroyed = found
        if destroyed:
            raise ClientErased("this client's data was erased; no new notes can be written for them")
        # Core statements rather than the ORM unit of work: this is the write hot path.
        note_id = conn.execute(
            _INSERT_NOTE,
            {
                "session_id": session_id,
                "client_id": client_id,
                "author_id": therapist_id,
                "kind": chosen.value,
                "current_version": 1,
                "created_at": now,
                "updated_at": now,
            },
        ).scalar_one()
        cipher = store.keyring.cipher(session, Owner("client", client_id), parent=Owner("therapist", therapist_id))
        body = cipher.encrypt(raw, body_context(therapist_id, client_id, session_id, note_id, 1))
        conn.execute(_INSERT_VERSION, {"note_id": note_id, "version": 1, "body": body, "created_at": now})
        seq = record(
            session, actor, "create", "note", note_id, client_id=client_id, detail={"kind": chosen.value, "version": 1}
        )
        log.info("note %d created for session %d (audit %d)", note_id, session_id, seq)
    return NoteView(
        id=note_id,
        session_id=session_id,
        client_id=client_id,
        author_id=therapist_id,
        kind=chosen,
        version=1,
        text=text,
        created_at=now,
        updated_at=now,
        signed_at=None,
    )


def add_version(
    store: Store,
    actor: Actor,
    session_id: int,
    note_id: int,
    text: str,
    *,
    expected_version: int | None = None,
) -> NoteView:
    """Append a new version of a note; the earlier ones stay as they are."""
    raw = _clean_text(text)
    now = datetime.now(UTC)
    with store.session() as session:
        _session_of(session, actor.therapist_id or 0, session_id)
        # Lock the note row (PostgreSQL) so two concurrent edits cannot both become version n+1.
        note = session.scalar(select(Note).where(Note.id == note_id).with_for_update())
        if note is None or note.session_id != session_id or not _visible(note, actor.therapist_id or 0):
            raise NoteNotFound(f"no note with id {note_id} in this session")
        if note.signed_at is not None:
            raise NoteSigned("this note is signed; it can no longer be changed")
        if expected_version is not None and expected_version != note.current_version:
            raise VersionConflict(
                f"the note is at version {note.current_version}, not {expected_version}; reload it and try again"
            )
        if _key_destroyed(session, note.client_id):
            raise ClientErased("this client's data was erased")
        version = note.current_version + 1
        session.add(
            NoteVersion(
                note_id=note.id, version=version, body=_seal(store, session, note, version, raw), created_at=now
            )
        )
        note.current_version = version
        note.updated_at = now
        record(session, actor, "update", "note", note.id, client_id=note.client_id, detail={"version": version})
        log.info("note %d: version %d", note.id, version)
        return _view(note, text)


def sign_note(store: Store, actor: Actor, session_id: int, note_id: int) -> NoteView:
    """Sign (lock) a note: no further versions. Signing a signed note changes nothing."""
    now = datetime.now(UTC)
    with store.session() as session:
        _session_of(session, actor.therapist_id or 0, session_id)
        note = _note_of(session, actor.therapist_id or 0, session_id, note_id)
        if note.signed_at is None:
            session.execute(
                update(Note).where(Note.id == note.id, Note.signed_at.is_(None)).values(signed_at=now, updated_at=now)
            )
            record(
                session,
                actor,
                "sign",
                "note",
                note.id,
                client_id=note.client_id,
                detail={"version": note.current_version},
            )
            log.info("note %d signed at version %d", note.id, note.current_version)
    return get_note(store, actor, session_id, note_id, history=False)
