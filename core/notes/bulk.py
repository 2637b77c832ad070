"""Many notes in one call (``alliance notes import``, ``POST /api/v1/notes/bulk``): the batched write path.

Each note gets exactly what :func:`core.notes.create_note` gives it: a note row, a version row
sealed under its client's data key with the same associated data, and its own hash-chained audit
entry ("create"). What is shared is the cost around them: everything is checked before anything is
written (a bad text, kind or session anywhere refuses the whole call, naming the item), the
sessions are looked up in one query, each client's cipher is fetched once, rows go to the database
column by column in one ``executemany`` or ``COPY`` per table and batch of ``batch_size``, the audit
chain head is claimed once per batch, and the whole call is one transaction: all notes are written, or none is.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    ColumnElement,
    Connection,
    Integer,
    Select,
    Table,
    any_,
    bindparam,
    func,
    select,
    text,
    update,
)

from core.audit import Actor, AuditHead, Entry, record_many
from core.clients.models import Client, TherapySession
from core.crypto import Owner, OwnerCipher
from core.crypto.models import DataKey
from core.notes.models import Note, NoteKind, NoteVersion
from core.notes.service import (
    ClientErased,
    InvalidNote,
    NotesError,
    NoteTooLarge,
    SessionNotFound,
    _clean_text,
    body_context,
    parse_kind,
)
from core.store.bulk import SMALL_COPY_THRESHOLD, insert_columns
from core.store.db import Store

log = logging.getLogger(__name__)

MAX_IMPORT = 50_000  # notes per call: one transaction must stay a reasonable size
# Notes per round of id allocation, INSERTs (executemany / COPY) and audit head claim: bounds the
# memory of one round; fewer rounds are fewer round trips.
BATCH_SIZE = 5000
_NOTES: Table = Note.__table__  # type: ignore[assignment]
_VERSIONS: Table = NoteVersion.__table__  # type: ignore[assignment]


def _session_lookup(ids: ColumnElement[bool], therapist: ColumnElement[bool]) -> Select[int, int, bool]:
    return (
        select(TherapySession.id, Client.id, DataKey.wrapped.is_(None))
        .join(Client, Client.id == TherapySession.client_id)
        .outerjoin(
            DataKey,
            (DataKey.owner_kind == "client") & (DataKey.owner_id == Client.id) & DataKey.superseded_at.is_(None),
        )
        .where(ids, therapist)
    )


# Built once (a call of 100 notes spent a third of its Python time building these):
# SQLAlchemy then reuses their cache keys and compiled forms.
# On SQLite the therapist's term is written ``therapist_id + 0`` so that it cannot use the index
# on clients (therapist_id, code): with it, SQLite walked every client of the therapist and probed
# each one's sessions for every id of the list (clients x ids probes: 6.5 ms for 100 ids among 100
# clients, more than all the rest of a 100-note call); without it, it looks each id up by primary
# key and checks the client's therapist (0.85 ms). The result is the same rows.
_SESSIONS = _session_lookup(
    TherapySession.id.in_(bindparam("ids", expanding=True)), (Client.therapist_id + 0) == bindparam("therapist_id")
)
# PostgreSQL: the ids as one array parameter. An expanding IN sends one placeholder per id, and
# psycopg parses the statement text again on each call (~9 ms of client CPU per 500 ids).
_SESSIONS_PG = _session_lookup(
    TherapySession.id == any_(bindparam("ids", type_=ARRAY(Integer))), Client.therapist_id == bindparam("therapist_id")
)
_TAKE_WRITE_LOCK = update(AuditHead).where(AuditHead.id == 1).values(seq=AuditHead.seq)
_LAST_NOTE_ID = select(func.coalesce(func.max(_NOTES.c.id), 0))
_NEXT_NOTE_IDS = text("SELECT nextval(pg_get_serial_sequence('notes', 'id')) FROM generate_series(1, :n)")


def _allocate_ids(conn: Connection, count: int) -> list[int]:
    """``count`` new note ids, taken before the rows are written (their ciphertexts are bound to them).

    PostgreSQL: from the table's own sequence (safe under concurrency). SQLite: after the largest
    id, which is what SQLite itself would hand out, read under the write lock
    :func:`import_notes` took first.
    """
    if conn.dialect.name == "postgresql":
        return list(conn.execute(_NEXT_NOTE_IDS, {"n": count}).scalars())
    last = conn.execute(_LAST_NOTE_ID).scalar_one()
    return list(range(last + 1, last + 1 + count))


_CHUNK = 500


@dataclass(frozen=True, slots=True)
class NewNote:
    """One note to write: the session (of the calling therapist), its Markdown text and kind."""

    session_id: int
    text: str
    kind: str | NoteKind = NoteKind.PROGRESS


@dataclass(frozen=True, slots=True)
class ImportedNote:
    id: int
    session_id: int
    client_id: int
    kind: NoteKind


class InvalidImport(NotesError, ValueError):
    """An item of the call is invalid; nothing was written. ``index`` is 1-based, ``cause`` the item's error."""

    def __init__(self, index: int, cause: NotesError) -> None:
        super().__init__(f"note {index}: {cause}")
        self.index = index
        self.cause = cause


def _checked(items: Sequence[NewNote]) -> list[tuple[NewNote, NoteKind, bytes]]:
    if len(items) > MAX_IMPORT:
        raise InvalidNote(f"at most {MAX_IMPORT} notes per import; split the file")
    out = []
    kinds: dict[str | NoteKind, NoteKind] = {}  # an import names a kind or two, in thousands of items
    for index, item in enumerate(items, start=1):
        try:
            if not isinstance(item.session_id, int) or isinstance(item.session_id, bool) or item.session_id < 1:
                raise InvalidNote("a session id is a positive whole number")
            raw_kind = item.kind
            if type(raw_kind) is str or type(raw_kind) is NoteKind:
                kind = kinds.get(raw_kind) or kinds.setdefault(raw_kind, parse_kind(raw_kind))
            else:  # whatever a JSON line held (a number, a list): parse_kind refuses it with its message
                kind = parse_kind(raw_kind)
            out.append((item, kind, _clean_text(item.text)))
        except (InvalidNote, NoteTooLarge) as exc:
            raise InvalidImport(index, exc) from None
    return out


def import_notes(
    store: Store, actor: Actor, items: Sequence[NewNote], *, batch_size: int = BATCH_SIZE
) -> list[ImportedNote]:
    """Write every item as a new note (version 1), in one transaction; returns them in order."""
    checked = _checked(items)
    if actor.therapist_id is None:
        raise SessionNotFound("notes are written by a therapist")
    therapist_id = actor.therapist_id
    if not checked:
        return []
    now = datetime.now(UTC)
    session_ids = sorted({item.session_id for item, _, _ in checked})
    written: list[ImportedNote] = []
    with store.session() as session:
        conn = session.connection()
        if conn.dialect.name == "sqlite":
            # Take SQLite's write lock before anything is read (the driver would begin the
            # transaction only at the first write): the sessions, erasure checks and the largest
            # note id below are then those this transaction writes against.
            conn.execute(_TAKE_WRITE_LOCK)
        # The sessions, scoped to this therapist, with their client and whether its key is gone.
        found: dict[int, tuple[int, bool]] = {}
        postgres = conn.dialect.name == "postgresql"
        chunk = len(session_ids) if postgres else _CHUNK  # SQLite: a bounded number of parameters
        for start in range(0, len(session_ids), chunk):
            rows = conn.execute(
                _SESSIONS_PG if postgres else _SESSIONS,
                {"ids": session_ids[start : start + chunk], "therapist_id": therapist_id},
            )
            found.update({sid: (cid, bool(gone)) for sid, cid, gone in rows})
        for index, (item, _, _) in enumerate(checked, start=1):
            if item.session_id not in found:
                raise InvalidImport(index, SessionNotFound(f"no session with id {item.session_id}"))
            if found[item.session_id][1]:
                raise InvalidImport(index, ClientErased("this client's data was erased; no new notes can be written"))
        ciphers: dict[int, OwnerCipher] = {}
        for cid in sorted({cid for cid, _ in found.values()}):
            ciphers[cid] = store.keyring.cipher(session, Owner("client", cid), parent=Owner("therapist", therapist_id))
        # Per note only what is its own: its id, its ciphertext (bound to it), its audit entry.
        # Rows go column by column (core.store.bulk.insert_columns); the values every note of the
        # call shares (author, version 1, the instant) are the same objects, converted once.
        by_kind: dict[NoteKind, dict[str, Any]] = {}
        for start in range(0, len(checked), batch_size):
            batch = checked[start : start + batch_size]
            count = len(batch)
            ids = _allocate_ids(conn, count)
            session_col = [item.session_id for item, _, _ in batch]
            client_col = [found[sid][0] for sid in session_col]
            kind_col = [kind.value for _, kind, _ in batch]
            bodies: list[bytes] = []
            entries: list[Entry] = []
            for note_id, sid, cid, (_, kind, raw) in zip(ids, session_col, client_col, batch, strict=True):
                bodies.append(ciphers[cid].encrypt(raw, body_context(therapist_id, cid, sid, note_id, 1)))
                detail = by_kind.get(kind) or by_kind.setdefault(kind, {"kind": kind.value, "version": 1})
                entries.append(Entry("create", "note", note_id, cid, detail))
                written.append(ImportedNote(note_id, sid, cid, kind))
            insert_columns(
                conn,
                _NOTES,
                {
                    "id": ids,
                    "session_id": session_col,
                    "client_id": client_col,
                    "author_id": [therapist_id] * count,
                    "kind": kind_col,
                    "current_version": [1] * count,
                    "created_at": [now] * count,
                    "updated_at": [now] * count,
                },
                copy_from=SMALL_COPY_THRESHOLD,
            )
            insert_columns(
                conn,
                _VERSIONS,
                {"note_id": ids, "version": [1] * count, "body": bodies, "created_at": [now] * count},
                copy_from=SMALL_COPY_THRESHOLD,
            )
            record_many(session, actor, entries, at=now)
    log.info("%d note(s) imported for %d session(s)", len(written), len(session_ids))
    return written


__all__ = ["BATCH_SIZE", "MAX_IMPORT", "ImportedNote", "InvalidImport", "NewNote", "import_notes"]
