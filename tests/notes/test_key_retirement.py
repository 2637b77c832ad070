"""Superseded data keys are destroyed once nothing is sealed under them; what was re-wrapped still opens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core.audit import AuditEntry, verify
from core.clients import get_client
from core.crypto import Owner
from core.crypto.models import DataKey
from core.mirror import ensure_therapist
from core.notes import create_note, get_note, list_notes, reencrypt_clients, retire_superseded_keys
from core.store import Store
from tests.conftest import test_keyring
from tests.core.test_privacy_at_rest import _raw_dump
from tests.notes.helpers import NotesWorld

LATER = timedelta(hours=2)  # past the grace a superseded key keeps (core.crypto.retire)


def _keys(store: Store, kind: str, owner_id: int) -> dict[str, tuple[bytes | None, bool]]:
    """kid -> (wrapped bytes, superseded) of one owner's data keys."""
    with store.session() as session:
        rows = session.execute(
            select(DataKey.kid, DataKey.wrapped, DataKey.superseded_at).where(
                DataKey.owner_kind == kind, DataKey.owner_id == owner_id
            )
        ).all()
    return {kid: (bytes(w) if w is not None else None, at is not None) for kid, w, at in rows}


def _in(dump: bytes, blob: bytes) -> bool:
    """``blob`` in a raw dump: as bytes (SQLite's file) or as hex text (pg_dump's bytea)."""
    return blob in dump or blob.hex().encode() in dump


def test_superseded_client_keys_are_destroyed_once_unused_and_gone_from_the_dump(store: Store) -> None:
    world = NotesWorld(store)
    clients = [world.client(name=f"Person {i}") for i in range(2)]
    sessions = [world.session(c) for c in clients]
    notes = [create_note(store, world.actor, sid, f"note {i}") for i, sid in enumerate(sessions)]
    old = {c.id: _keys(store, "client", c.id) for c in clients}
    assert all(len(k) == 1 for k in old.values())

    result = reencrypt_clients(store, world.actor)
    assert (result.clients, result.retired) == (2, 0)  # just superseded: still within its grace
    # Within the grace nothing is destroyed (another process may still hold the old key as current).
    assert retire_superseded_keys(store, world.actor) == 0
    before = _raw_dump(store)
    assert all(w is not None and _in(before, w) for keys in old.values() for w, _ in keys.values())
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 2

    for c in clients:
        keys = _keys(store, "client", c.id)
        [old_kid] = old[c.id]
        assert keys[old_kid] == (None, True)  # destroyed
        assert [w is not None for kid, (w, superseded) in keys.items() if not superseded] == [True]
    fresh = Store(store.engine, keyring=test_keyring())  # another process, empty caches
    for i, (sid, note) in enumerate(zip(sessions, notes, strict=True)):
        assert get_note(fresh, world.actor, sid, note.id).text == f"note {i}"
        assert get_client(fresh, world.therapist, clients[i].code, reveal=True).details.name == f"Person {i}"  # type: ignore[union-attr]
    with store.session() as session:
        assert session.scalars(select(AuditEntry.detail).where(AuditEntry.target_kind == "keyring")).all()[-1] == {
            "superseded_keys": 2
        }
        assert verify(session)[1] == []
    # Nothing more to do the next time.
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 0

    dump = _raw_dump(store)
    for keys in old.values():
        for wrapped, _ in keys.values():
            assert wrapped is not None and not _in(dump, wrapped) and not _in(dump, wrapped[-16:])


def test_a_superseded_key_something_is_still_sealed_under_stays(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client(name="Kept Readable")
    sid = world.session(client)
    note = create_note(store, world.actor, sid, "sealed under the first key")
    # A re-key whose payloads were not re-encrypted (a feature without a re-encryptor, or a crash
    # between the two): the old key still opens the note, so it must survive.
    with store.session() as session:
        store.keyring.rekey(session, Owner("client", client.id))
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 0
    fresh = Store(store.engine, keyring=test_keyring())
    assert get_note(fresh, world.actor, sid, note.id).text == "sealed under the first key"
    assert get_client(fresh, world.therapist, client.code, reveal=True).details.name == "Kept Readable"  # type: ignore[union-attr]
    # Re-encrypted at last: now the first two keys are both unused and go.
    reencrypt_clients(store, world.actor)
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 2
    assert get_note(Store(store.engine, keyring=test_keyring()), world.actor, sid, note.id).text == (
        "sealed under the first key"
    )


def test_a_rekeyed_therapist_key_rewraps_client_keys_which_still_open_and_is_then_destroyed(store: Store) -> None:
    # A therapist with clients but no calendar: nothing is sealed under the therapist key itself.
    therapist = ensure_therapist(store, "quiet@alliance.test")
    world = NotesWorld(store)  # another therapist with a synced calendar (its key seals the events)
    from core.clients import create_client

    quiet = [create_client(store, therapist, name=f"Quiet {i}") for i in range(2)]  # type: ignore[arg-type]
    busy = world.client(name="Busy")
    sid = world.session(busy)
    note = create_note(store, world.actor, sid, "under a re-wrapped client key")
    [quiet_old] = _keys(store, "therapist", therapist)
    [busy_old] = _keys(store, "therapist", world.therapist)

    with store.session() as session:
        store.keyring.rekey(session, Owner("therapist", therapist))
        store.keyring.rekey(session, Owner("therapist", world.therapist))
    with store.session() as session:
        parents = set(session.scalars(select(DataKey.parent_kid).where(DataKey.owner_kind == "client")))
    assert quiet_old not in parents and busy_old not in parents  # the client keys were re-wrapped

    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 1
    assert _keys(store, "therapist", therapist)[quiet_old] == (None, True)  # unused: destroyed
    assert _keys(store, "therapist", world.therapist)[busy_old][0] is not None  # still seals the events
    fresh = Store(store.engine, keyring=test_keyring())
    for i, c in enumerate(quiet):
        assert get_client(fresh, therapist, c.code, reveal=True).details.name == f"Quiet {i}"  # type: ignore[union-attr]
    assert [n.text for n in list_notes(fresh, world.actor, sid)] == ["under a re-wrapped client key"]
    assert get_note(fresh, world.actor, sid, note.id).version == 1


def test_a_process_holding_the_old_key_seals_with_the_new_one_after_its_cache_expires(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    server = Store(store.engine, keyring=test_keyring())  # a long-running web process
    create_note(server, world.actor, sid, "cached the key")
    reencrypt_clients(store, world.actor)  # the CLI, in another process
    server.keyring.owner_cache_seconds = 0  # its cache has expired
    later = create_note(server, world.actor, sid, "written after the re-key")
    [current] = [k for k, (w, superseded) in _keys(store, "client", client.id).items() if not superseded]
    with store.session() as session:
        from core.notes import NoteVersion

        body = session.scalar(select(NoteVersion.body).where(NoteVersion.note_id == later.id))
    assert body is not None and bytes(body[1:17]).hex() == current
    # So retiring the old key loses nothing.
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 1
    fresh = Store(store.engine, keyring=test_keyring())
    assert [n.text for n in list_notes(fresh, world.actor, sid)] == ["cached the key", "written after the re-key"]


def test_rating_comments_and_checklist_answers_are_reencrypted_so_the_old_key_can_go(store: Store) -> None:
    from core.checklists import AnswerInput, record_answers, session_checklists
    from core.ratings import get_rating, read_comment, submit_rating

    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    scores = {"bond": "9", "goals": "8", "approach": "7", "overall": "9"}
    submit_rating(store, sid, client.id, scores, "a comment only the therapist reads")
    run = next(r for r in session_checklists(store, world.therapist, sid).runs if r.items)
    item = run.items[0].item
    record_answers(store, world.therapist, sid, run.phase, [AnswerInput(item.key, "skipped", reason="no time today")])
    [old_kid] = _keys(store, "client", client.id)

    result = reencrypt_clients(store, world.actor)
    assert result.payloads == 3  # details, comment, answer
    assert retire_superseded_keys(store, world.actor, now=datetime.now(UTC) + LATER) == 1
    assert _keys(store, "client", client.id)[old_kid] == (None, True)

    fresh = Store(store.engine, keyring=test_keyring())
    rating = get_rating(fresh, sid)
    assert rating is not None and read_comment(fresh, rating) == "a comment only the therapist reads"
    answered = next(r for r in session_checklists(fresh, world.therapist, sid).runs if r.phase is run.phase)
    answer = next(s.answer for s in answered.items if s.item.key == item.key)
    assert answer is not None and answer.reason == "no time today" and not answer.erased
