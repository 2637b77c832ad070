"""The batched write path: many notes in one call, each sealed and audited as if written alone."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry, verify
from core.notes import (
    MAX_NOTE_BYTES,
    ClientErased,
    InvalidImport,
    NewNote,
    Note,
    NoteKind,
    NoteTooLarge,
    SessionNotFound,
    create_note,
    erase_client,
    get_note,
    import_notes,
    list_notes,
)
from core.store import Store
from core.store.bulk import SMALL_COPY_THRESHOLD
from tests.conftest import test_keyring
from tests.notes.helpers import NotesWorld


def _counts(store: Store) -> tuple[int, int]:
    with store.session() as session:
        notes = session.scalar(select(func.count()).select_from(Note)) or 0
        entries = session.scalar(select(func.count()).select_from(AuditEntry)) or 0
    return notes, entries


def test_an_import_writes_every_note_sealed_and_audited_one_entry_each(store: Store) -> None:
    world = NotesWorld(store)
    clients = [world.client() for _ in range(3)]
    sessions = [world.session(c) for c in clients]
    before = create_note(store, world.actor, sessions[0], "written alone")
    items = [
        NewNote(sessions[i % 3], f"imported {i}", NoteKind.PROCESS if i % 5 == 0 else "progress") for i in range(60)
    ]
    _, entries_before = _counts(store)

    # Two batches: PostgreSQL gets the first by COPY, the short second one by executemany.
    imported = import_notes(store, world.actor, items, batch_size=SMALL_COPY_THRESHOLD + 2)

    assert [n.session_id for n in imported] == [i.session_id for i in items]
    assert len({n.id for n in imported}) == 60 and min(n.id for n in imported) > before.id
    fresh = Store(store.engine, keyring=test_keyring())  # another process, empty caches
    for i, n in enumerate(imported):
        view = get_note(fresh, world.actor, n.session_id, n.id)
        assert (view.text, view.kind, view.version, view.client_id) == (f"imported {i}", n.kind, 1, clients[i % 3].id)
    assert [v.text for v in list_notes(fresh, world.actor, sessions[1])] == [f"imported {i}" for i in range(1, 60, 3)]
    with store.session() as session:
        creates = session.execute(
            select(AuditEntry.target_id, AuditEntry.client_id, AuditEntry.detail)
            .where(AuditEntry.action == "create", AuditEntry.seq > entries_before)
            .order_by(AuditEntry.seq)
        ).all()
        assert [(t, c) for t, c, _ in creates] == [(n.id, n.client_id) for n in imported]
        assert all(d == {"kind": n.kind.value, "version": 1} for (_, _, d), n in zip(creates, imported, strict=True))
        count, findings = verify(session)
        assert findings == [] and count > 60
    # The chain goes on as before after a batch.
    create_note(store, world.actor, sessions[2], "after the import")
    with store.session() as session:
        assert verify(session)[1] == []


def test_one_bad_item_refuses_the_whole_import_naming_it_and_writes_nothing(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    other = NotesWorld(store, "other@alliance.test", name="other")
    theirs = other.session(other.client())
    erased = world.client()
    gone = world.session(erased)
    erase_client(store, world.actor, erased.code)
    counts = _counts(store)

    cases: list[tuple[NewNote, type[Exception], str]] = [
        (NewNote(theirs, "not mine"), SessionNotFound, f"note 3: no session with id {theirs}"),
        (NewNote(sid, "x" * (MAX_NOTE_BYTES + 1)), NoteTooLarge, "note 3: a note may hold at most"),
        (NewNote(sid, "   "), Exception, "note 3: a note needs some text"),
        (NewNote(sid, "text", "diary"), Exception, "note 3: a note's kind is 'progress' or 'process'"),
        # What a JSON line may hold: the kinds parsed once per distinct value must still refuse these.
        (NewNote(sid, "text", ["progress"]), Exception, "note 3: a note's kind is 'progress' or 'process'"),  # type: ignore[arg-type]
        (NewNote(sid, "\u2003\n\t"), Exception, "note 3: a note needs some text"),
        (NewNote(gone, "erased"), ClientErased, "note 3: this client's data was erased"),
    ]
    for bad, cause, message in cases:
        with pytest.raises(InvalidImport, match=message) as raised:
            import_notes(store, world.actor, [NewNote(sid, "fine"), NewNote(sid, "fine too"), bad], batch_size=1)
        assert raised.value.index == 3 and isinstance(raised.value.cause, cause)
        assert _counts(store) == counts  # nothing half-written: no note, no audit entry
    assert import_notes(store, world.actor, []) == []


def test_kinds_are_read_per_item_whatever_their_spelling(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    spelled: list[str | NoteKind] = [" Process ", NoteKind.PROCESS, "progress", "PROGRESS", " Process "]
    imported = import_notes(store, world.actor, [NewNote(sid, f"n{i}", k) for i, k in enumerate(spelled)])
    assert [n.kind for n in imported] == [
        NoteKind.PROCESS,
        NoteKind.PROCESS,
        NoteKind.PROGRESS,
        NoteKind.PROGRESS,
        NoteKind.PROCESS,
    ]
