"""Erasure by crypto-shredding and export of a client's record (JSON bundle, HTML, disclosures)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from core.audit import AuditEntry, verify
from core.clients import UnknownClient, get_client
from core.crypto.models import DataKey
from core.notes import (
    ClientErased,
    ExportScope,
    InvalidNote,
    NoteDisclosure,
    add_version,
    create_note,
    erase_client,
    export_client,
    export_html,
    list_notes,
    register_export_section,
    sign_note,
)
from core.notes.export import _SECTIONS
from core.store import Store
from tests.conftest import test_keyring
from tests.core.test_privacy_at_rest import _raw_dump
from tests.notes.helpers import NotesWorld


def _actions(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(AuditEntry.action).order_by(AuditEntry.seq)))


def test_erasure_makes_exactly_that_clients_data_unreadable(store: Store) -> None:
    world = NotesWorld(store)
    gone, kept = world.client(name="Gone Person", email="gone@example.org"), world.client(name="Kept Person")
    gone_sid, kept_sid = world.session(gone), world.session(kept)
    create_note(store, world.actor, gone_sid, "about the erased client")
    create_note(store, world.actor, kept_sid, "about the other client")

    result = erase_client(store, world.actor, gone.code.lower())
    assert (result.client_id, result.notes, result.erased_now) == (gone.id, 1, True)

    with pytest.raises(ClientErased):
        list_notes(store, world.actor, gone_sid)
    with pytest.raises(ClientErased):
        create_note(store, world.actor, gone_sid, "new")
    with pytest.raises(ClientErased):
        export_client(store, world.actor, gone.code)
    erased = get_client(store, world.therapist, gone.code, reveal=True)
    assert erased.erased and erased.details is None and erased.archived_at is not None
    # Everyone else is untouched.
    assert [n.text for n in list_notes(store, world.actor, kept_sid)] == ["about the other client"]
    assert get_client(store, world.therapist, kept.code, reveal=True).details.name == "Kept Person"  # type: ignore[union-attr]
    # A fresh process (new keyring, empty caches) cannot read it either.
    fresh = Store(store.engine, keyring=test_keyring())
    with pytest.raises(ClientErased):
        list_notes(fresh, world.actor, gone_sid)
    assert erase_client(store, world.actor, gone.code).erased_now is False
    assert _actions(store).count("erase") == 2
    with store.session() as session:
        assert verify(session)[1] == []


def test_erasure_takes_effect_at_once_in_a_process_that_cached_the_key(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    create_note(store, world.actor, sid, "cached elsewhere")
    web = Store(store.engine, keyring=test_keyring())  # e.g. the web process
    assert list_notes(web, world.actor, sid)[0].text == "cached elsewhere"  # its keyring caches the key now
    erase_client(store, world.actor, client.code)  # e.g. the CLI
    with pytest.raises(ClientErased):
        list_notes(web, world.actor, sid)


def test_erasing_an_unknown_client_changes_nothing(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client())
    create_note(store, world.actor, sid, "text")
    other = NotesWorld(store, "other@alliance.test", "home")
    foreign = other.client()
    before = _actions(store)
    with store.session() as session:
        keys_before = session.scalar(select(func.count()).where(DataKey.wrapped.is_not(None)))
    for code in ("ZZZZ", "", foreign.code):  # unknown, empty, another therapist's
        with pytest.raises(UnknownClient):
            erase_client(store, world.actor, code)
    assert _actions(store) == before
    with store.session() as session:
        assert session.scalar(select(func.count()).where(DataKey.wrapped.is_not(None))) == keys_before
    assert list_notes(store, world.actor, sid)[0].text == "text"


def test_an_export_has_sessions_progress_notes_and_history_but_no_process_notes(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client(name="Export Person", email="export@example.org")
    sid = world.session(client)
    note = create_note(store, world.actor, sid, "progress v1")
    add_version(store, world.actor, sid, note.id, "progress v2")
    sign_note(store, world.actor, sid, note.id)
    create_note(store, world.actor, sid, "process thoughts", kind="process")

    bundle = export_client(store, world.actor, client.code)
    assert bundle["format"] == "alliance.client-export" and bundle["includes_process_notes"] is False
    assert bundle["client"]["name"] == "Export Person" and bundle["client"]["email"] == "export@example.org"
    [session] = bundle["sessions"]
    assert session["id"] == sid and session["history"][0]["kind"] == "created"
    [exported] = session["notes"]
    assert exported["kind"] == "progress" and exported["signed_at"] is not None
    assert [v["text"] for v in exported["versions"]] == ["progress v1", "progress v2"]
    assert "process thoughts" not in repr(bundle)
    page = export_html(bundle)
    assert "progress v2" in page and "Export Person" in page and "process thoughts" not in page
    assert _actions(store)[-1] == "export"


def test_process_notes_need_a_reason_and_are_recorded_as_a_disclosure(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    process = create_note(store, world.actor, sid, "process thoughts", kind="process")
    before = _actions(store)
    for reason in (None, "   "):
        with pytest.raises(InvalidNote, match="reason"):
            export_client(store, world.actor, client.code, include_process_notes=True, reason=reason)
    assert _actions(store) == before

    reason = "Court order 2031/44 served to the practice"
    bundle = export_client(store, world.actor, client.code, include_process_notes=True, reason=reason)
    assert [n["versions"][0]["text"] for n in bundle["sessions"][0]["notes"]] == ["process thoughts"]
    assert bundle["disclosure"]["reason"] == reason and bundle["disclosure"]["note_ids"] == [process.id]
    assert _actions(store)[-2:] == ["disclose", "export"]
    with store.session() as session:
        [row] = session.scalars(select(NoteDisclosure)).all()
        assert row.note_ids == [process.id] and reason.encode() not in row.reason
    assert reason.encode() not in _raw_dump(store)


def test_other_features_add_sections_to_the_export(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    seen: list[ExportScope] = []

    def ratings(_store: Store, scope: ExportScope) -> Any:
        seen.append(scope)
        return [{"session_id": s, "total": 38.5} for s in scope.session_ids]

    register_export_section("ratings_test", ratings)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_export_section("ratings_test", lambda s, c: None)
        bundle = export_client(store, world.actor, client.code)
    finally:
        _SECTIONS.pop("ratings_test", None)
    assert bundle["sections"]["ratings_test"] == [{"session_id": sid, "total": 38.5}]
    assert seen[0].client_id == client.id and seen[0].therapist_id == world.therapist


def test_the_export_carries_the_clients_ratings_and_checklist_answers(store: Store) -> None:
    from core.checklists import AnswerInput, record_answers, session_checklists
    from core.ratings import submit_rating

    world = NotesWorld(store)
    client, other = world.client(), world.client()
    sid, theirs = world.session(client), world.session(other)
    scores = {"bond": "9", "goals": "8.5", "approach": "7", "overall": "9"}
    submit_rating(store, sid, client.id, scores, "Felt heard about the Lindqvist matter")
    submit_rating(store, theirs, other.id, scores, "someone else's comment")
    run = next(r for r in session_checklists(store, world.therapist, sid).runs if r.items)
    plain = [s.item for s in run.items if not s.item.sensitive]
    done = plain[0]
    answers = [AnswerInput(done.key, "done", "checked the room" if done.response.value == "text" else None)]
    if len(plain) > 1:
        answers.append(AnswerInput(plain[1].key, "skipped", reason="client late"))
    record_answers(store, world.therapist, sid, run.phase, answers)

    bundle = export_client(store, world.actor, client.code)
    [rating] = bundle["sections"]["ratings"]
    assert (rating["session_id"], rating["total"], rating["comment"]) == (
        sid,
        33.5,
        "Felt heard about the Lindqvist matter",
    )
    [checklist] = bundle["sections"]["checklists"]
    assert checklist["session_id"] == sid and checklist["phase"] == run.phase.value
    assert [(a["key"], a["status"]) for a in checklist["answers"]] == [(a.key, a.status) for a in answers]
    if len(plain) > 1:
        assert checklist["answers"][1]["reason"] == "client late"
    assert "Felt heard about the Lindqvist matter" in export_html(bundle)
    # After the erasure the comment is gone with the key (and the export is refused altogether).
    erase_client(store, world.actor, client.code)
    with pytest.raises(ClientErased):
        export_client(store, world.actor, client.code)
    assert export_client(store, world.actor, other.code)["sections"]["ratings"][0]["comment"] == (
        "someone else's comment"
    )
