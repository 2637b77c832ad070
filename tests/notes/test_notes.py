"""Session notes: versions, signing, limits, scoping, encryption bound to the row, identity across syncs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from core.audit import Actor, AuditEntry, verify
from core.clients import list_sessions, update_client
from core.crypto import Keyring, MasterKeyError, MasterKeys, generate_key_text
from core.notes import (
    MAX_NOTE_BYTES,
    InvalidNote,
    NoteKind,
    NoteNotFound,
    NoteSigned,
    NoteTooLarge,
    NoteUnreadable,
    NoteVersion,
    SessionNotFound,
    VersionConflict,
    add_version,
    create_note,
    get_note,
    list_notes,
    session_ref,
    sign_note,
)
from core.store import Store
from core.sync import OccurrenceKey
from tests.core.test_clients import _occ
from tests.notes.helpers import MONDAY, NotesWorld


def _audit(store: Store) -> list[tuple[str, str, int | None]]:
    with store.session() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.target_kind, AuditEntry.target_id).order_by(AuditEntry.seq)
        ).all()
    return [(a, k, i) for a, k, i in rows]


def test_a_note_is_written_versioned_and_read_back_with_its_history(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    note = create_note(store, world.actor, sid, "# Session 1\n\nSlept *better*.")
    assert (note.kind, note.version, note.signed_at) == (NoteKind.PROGRESS, 1, None)
    second = add_version(store, world.actor, sid, note.id, "# Session 1\n\nSlept better; fewer nightmares.")
    assert second.version == 2

    full = get_note(store, world.actor, sid, note.id)
    assert full.text == "# Session 1\n\nSlept better; fewer nightmares."
    assert [(v.version, v.text) for v in full.history] == [
        (1, "# Session 1\n\nSlept *better*."),
        (2, "# Session 1\n\nSlept better; fewer nightmares."),
    ]
    [listed] = list_notes(store, world.actor, sid)
    assert (listed.id, listed.version, listed.text) == (note.id, 2, full.text)
    # Every access is in the audit log, in order.
    assert _audit(store) == [
        ("create", "note", note.id),
        ("update", "note", note.id),
        ("read", "note", note.id),
        ("list", "session", sid),
    ]


def test_a_signed_note_is_locked_and_a_stale_edit_is_refused(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    note = create_note(store, world.actor, sid, "draft")
    add_version(store, world.actor, sid, note.id, "second", expected_version=1)
    with pytest.raises(VersionConflict, match="version 2"):
        add_version(store, world.actor, sid, note.id, "lost update", expected_version=1)
    signed = sign_note(store, world.actor, sid, note.id)
    assert signed.signed_at is not None and signed.version == 2 and signed.text == "second"
    with pytest.raises(NoteSigned):
        add_version(store, world.actor, sid, note.id, "after signing")
    assert sign_note(store, world.actor, sid, note.id).signed_at == signed.signed_at  # idempotent
    assert [v.version for v in get_note(store, world.actor, sid, note.id).history] == [1, 2]


def test_limits_and_bad_input_are_clear_errors_that_change_nothing(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    assert create_note(store, world.actor, sid, "é" * (MAX_NOTE_BYTES // 2)).version == 1  # exactly 64 KB
    with pytest.raises(NoteTooLarge, match="65536") as too_large:
        create_note(store, world.actor, sid, "x" * (MAX_NOTE_BYTES + 1))
    assert too_large.value.size == MAX_NOTE_BYTES + 1
    with pytest.raises(InvalidNote, match="some text"):
        create_note(store, world.actor, sid, "   \n ")
    with pytest.raises(InvalidNote, match="progress"):
        create_note(store, world.actor, sid, "text", kind="diary")
    with pytest.raises(InvalidNote, match="Unicode"):
        create_note(store, world.actor, sid, "broken \udc80 surrogate")
    with pytest.raises(SessionNotFound):
        create_note(store, world.actor, 999_999, "text")
    assert len(list_notes(store, world.actor, sid)) == 1


def test_another_therapist_finds_neither_the_session_nor_its_notes(store: Store) -> None:
    a = NotesWorld(store)
    b = NotesWorld(store, "other@alliance.test", "home")
    sid = a.session(a.client())
    progress = create_note(store, a.actor, sid, "progress")
    process = create_note(store, a.actor, sid, "process", kind="process")
    for note_id in (progress.id, process.id):
        with pytest.raises((SessionNotFound, NoteNotFound)):
            get_note(store, b.actor, sid, note_id)
        with pytest.raises((SessionNotFound, NoteNotFound)):
            add_version(store, b.actor, sid, note_id, "hijack")
        with pytest.raises((SessionNotFound, NoteNotFound)):
            sign_note(store, b.actor, sid, note_id)
    with pytest.raises(SessionNotFound):
        list_notes(store, b.actor, sid)
    with pytest.raises(SessionNotFound):
        create_note(store, b.actor, sid, "planted")
    # A note id of one session is unknown under another session, even of the same therapist.
    other_sid = a.session(a.client())
    with pytest.raises(NoteNotFound):
        get_note(store, a.actor, other_sid, progress.id)
    assert {n.kind for n in list_notes(store, a.actor, sid)} == {NoteKind.PROGRESS, NoteKind.PROCESS}


def test_a_tampered_or_moved_ciphertext_is_a_specific_audited_error(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    first = create_note(store, world.actor, sid, "first note")
    second = create_note(store, world.actor, sid, "second note")

    # Moved: the first note's ciphertext copied into the second note's row.
    with store.session() as session:
        body = session.scalar(select(NoteVersion.body).where(NoteVersion.note_id == first.id))
        session.execute(update(NoteVersion).where(NoteVersion.note_id == second.id).values(body=body))
    assert get_note(store, world.actor, sid, first.id).text == "first note"
    with pytest.raises(NoteUnreadable, match="recorded in the audit log"):
        get_note(store, world.actor, sid, second.id)
    with pytest.raises(NoteUnreadable):
        list_notes(store, world.actor, sid)

    # Tampered: one bit of the first note's ciphertext flipped.
    assert body is not None
    flipped = body[:-1] + bytes([body[-1] ^ 1])
    with store.session() as session:
        session.execute(update(NoteVersion).where(NoteVersion.note_id == first.id).values(body=flipped))
    with pytest.raises(NoteUnreadable):
        get_note(store, world.actor, sid, first.id)
    failures = [(k, i) for a, k, i in _audit(store) if a == "decrypt_failed"]
    assert failures == [("note", second.id), ("note", second.id), ("note", first.id)]


def test_notes_stay_with_their_session_through_reschedule_resync_provider_id_change(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client, uid="moving@test", start=MONDAY)
    note = create_note(store, world.actor, sid, "before the move")

    moved = MONDAY + timedelta(days=2, hours=3)
    world.calendar.put(_occ(OccurrenceKey("moving@test"), moved, provider_id="p-new"))
    world.sync()
    world.deliver_outbox()
    world.calendar.expire_cursors()
    world.sync()
    world.deliver_outbox()

    [session] = list_sessions(store, world.therapist)
    assert (session.id, session.start) == (sid, moved)
    assert [n.text for n in list_notes(store, world.actor, sid)] == ["before the move"]
    assert get_note(store, world.actor, sid, note.id).session_id == sid
    # Changing the client's details does not disturb the notes (same client key).
    update_client(store, world.therapist, client.code, name="Someone Else")
    assert list_notes(store, world.actor, sid)[0].text == "before the move"


def test_a_session_whose_event_is_deleted_keeps_its_notes_marked_as_removed(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client(), uid="gone@test", start=MONDAY)
    create_note(store, world.actor, sid, "kept")
    assert not session_ref(store, world.actor, sid).event_removed
    world.calendar.delete(OccurrenceKey("gone@test"))
    world.sync()
    world.calendar.expire_cursors()
    world.sync()
    world.deliver_outbox()
    ref = session_ref(store, world.actor, sid)
    assert ref.event_removed
    assert [n.text for n in list_notes(store, world.actor, sid)] == ["kept"]


def test_an_actor_without_a_therapist_reads_nothing(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    create_note(store, world.actor, sid, "private")
    with pytest.raises((SessionNotFound, NoteNotFound)):
        list_notes(store, Actor(None, "system"), sid)


def test_a_read_with_the_wrong_master_key_is_refused_and_audited(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    note = create_note(store, world.actor, sid, "only with the right key")
    # A process holding another master key (Store.open refuses one at start; this one skipped it).
    wrong = Store(store.engine, keyring=Keyring(MasterKeys.from_env_value(generate_key_text())))
    with pytest.raises(MasterKeyError):
        list_notes(wrong, world.actor, sid)
    with pytest.raises(MasterKeyError):
        get_note(wrong, world.actor, sid, note.id)
    with store.session() as session:
        entries = session.scalars(select(AuditEntry).where(AuditEntry.action == "decrypt_failed")).all()
        assert [(e.target_kind, e.target_id, e.detail) for e in entries] == [
            ("note", note.id, {"reason": "wrong_master_key"}),
            ("note", note.id, {"reason": "wrong_master_key"}),
        ]
        # The attempted reads are in the log too, the chain is intact, and it holds no note text.
        assert [a for a, _, _ in _audit(store)][-4:] == ["list", "decrypt_failed", "read", "decrypt_failed"]
        count, findings = verify(session)
        assert count and findings == []
    assert get_note(store, world.actor, sid, note.id).text == "only with the right key"
