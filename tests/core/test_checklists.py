"""Therapist checklists: version-1 defaults, versioned edits, runs with encrypted answers, the S2 flag, scoping."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.checklists import (
    DEFAULTS,
    AnswerInput,
    AnswerStatus,
    Applies,
    ChecklistItem,
    InvalidChecklist,
    Phase,
    Response,
    SessionCancelled,
    UnknownTemplate,
    get_template,
    list_templates,
    new_template_version,
    open_flags,
    record_answers,
    session_checklists,
)
from core.checklists.models import ChecklistAnswer
from core.clients import UnknownSession, assign_series, create_client, list_sessions, set_session_modality
from core.crypto import Owner
from core.store import Store
from core.sync import OccurrenceKey, Status, recurrence_id_for
from tests.core.test_clients import MONDAY, World, _occ
from tests.core.test_privacy_at_rest import _raw_dump

LOCATION = "Calle Ficticia 123, 4B, Zaragoza; callback +34 600 111 222"


def _sessions(store: Store, count: int = 3, modality: str = "online") -> tuple[World, list[int]]:
    world = World(store)
    client = create_client(store, world.therapist, modality=modality)
    world.weekly("weekly@test", MONDAY, count)
    world.sync()
    assign_series(store, world.therapist, world.connection, "weekly@test", client.code, from_start=MONDAY)
    return world, [s.id for s in list_sessions(store, world.therapist)]


def _keys(items: object) -> list[str]:
    return [state.item.key for state in items]  # type: ignore[attr-defined]


def test_every_therapist_starts_from_version_1_of_the_three_reference_lists(store: Store) -> None:
    world = World(store)
    templates = list_templates(store, world.therapist)
    assert [(t.phase, t.version, t.current) for t in templates] == [
        (Phase.PRE, 1, True),
        (Phase.START, 1, True),
        (Phase.POST, 1, True),
    ]
    by_phase = {t.phase: t for t in templates}
    assert [i.key for i in by_phase[Phase.PRE].items] == [f"T{n}" for n in range(1, 12)]
    assert [i.key for i in by_phase[Phase.START].items] == [f"S{n}" for n in range(1, 8)]
    assert [i.key for i in by_phase[Phase.POST].items] == [f"P{n}" for n in range(1, 8)]
    s2 = next(i for i in by_phase[Phase.START].items if i.key == "S2")
    assert s2.blocking and s2.response is Response.TEXT and s2.sensitive and s2.applies is Applies.ONLINE
    assert next(i for i in by_phase[Phase.START].items if i.key == "S7").applies is Applies.FIRST_SESSION
    # Asking again does not seed twice.
    assert len(list_templates(store, world.therapist, all_versions=True)) == 3


def test_an_edit_is_a_new_version_and_started_runs_keep_theirs(store: Store) -> None:
    world, (first, second, _third) = _sessions(store)
    record_answers(store, world.therapist, first, "pre", [AnswerInput("T1", "done")])
    v1 = next(t for t in list_templates(store, world.therapist) if t.phase is Phase.PRE)
    edited = [
        replace(i, text="Platform checked; link unique; recording off.") if i.key == "T1" else i for i in v1.items
    ]
    edited = [i for i in edited if i.key != "T11"] + [ChecklistItem("T12", "Water and tissues in the room.")]
    v2 = new_template_version(store, world.therapist, Phase.PRE, edited)
    assert (v2.version, v2.current) == (2, True)
    assert not get_template(store, world.therapist, v1.id).current
    assert get_template(store, world.therapist, v1.id).items == v1.items  # never changed

    # The started run still shows version 1 (with T11); a new run starts on version 2 (with T12).
    old = session_checklists(store, world.therapist, first).run(Phase.PRE)
    assert old.template.version == 1 and "T11" in _keys(old.items) and "T12" not in _keys(old.items)
    new = session_checklists(store, world.therapist, second).run(Phase.PRE)
    assert new.template.version == 2 and "T12" in _keys(new.items) and "T11" not in _keys(new.items)
    assert new.items[0].item.text == "Platform checked; link unique; recording off."
    with pytest.raises(InvalidChecklist):
        record_answers(store, world.therapist, first, "pre", [AnswerInput("T12", "done")])
    assert record_answers(store, world.therapist, second, "pre", [AnswerInput("t12", "done")]).template.version == 2


def test_bad_templates_are_refused_with_the_field_named(store: Store) -> None:
    world = World(store)
    start = next(t for t in list_templates(store, world.therapist) if t.phase is Phase.START).items
    cases = [
        (Phase.PRE, [], "items"),
        (Phase.PRE, [ChecklistItem("T1", "a"), ChecklistItem("t1", "b")], "items.1.key"),
        (Phase.PRE, [ChecklistItem("1bad", "a")], "items.0.key"),
        (Phase.PRE, [ChecklistItem("T1", "   ")], "items.0.text"),
        (Phase.PRE, [ChecklistItem("T1", "x" * 501)], "items.0.text"),
        (Phase.START, [i for i in start if i.key != "S2"], "items"),  # the location item stays
        (Phase.START, [replace(i, blocking=False) if i.key == "S2" else i for i in start], "items"),
    ]
    for phase, items, field in cases:
        with pytest.raises(InvalidChecklist) as caught:
            new_template_version(store, world.therapist, phase, items)
        assert caught.value.field == field
    assert len(list_templates(store, world.therapist, all_versions=True)) == 3  # nothing written
    # Rewording S2 is fine.
    reworded = [
        replace(i, text="Where are you today, and on which number can I call you?") if i.key == "S2" else i
        for i in start
    ]
    assert new_template_version(store, world.therapist, "start", reworded).version == 2


def test_answers_done_skipped_and_texts_are_validated_and_nothing_half_written(store: Store) -> None:
    world, (first, *_rest) = _sessions(store)
    bad = [
        ([AnswerInput("S2", "done")], "answers.0.text"),  # S2 needs the place and number
        ([AnswerInput("S1", "skipped")], "answers.0.reason"),  # a skip needs a reason
        ([AnswerInput("S1", "maybe")], "answers.0.status"),
        ([AnswerInput("S1", "done"), AnswerInput("Z9", "done")], "answers.1.key"),
        ([AnswerInput("S1", "done"), AnswerInput("s1", "done")], "answers.1.key"),
        ([AnswerInput("S1", "done", reason="because")], "answers.0.reason"),
        ([], "answers"),
    ]
    for answers, field in bad:
        with pytest.raises(InvalidChecklist) as caught:
            record_answers(store, world.therapist, first, "start", answers)
        assert caught.value.field == field
    with store.session() as session:
        assert session.scalars(select(ChecklistAnswer)).all() == []

    run = record_answers(
        store,
        world.therapist,
        first,
        Phase.START,
        [
            AnswerInput("S1", "done"),
            AnswerInput("S2", "done", text=LOCATION),
            AnswerInput("S6", "skipped", reason="Ran out of time; ask next week"),
        ],
    )
    answers = {s.item.key: s.answer for s in run.items if s.answer}
    assert set(answers) == {"S1", "S2", "S6"} and not run.complete
    assert answers["S2"] is not None and answers["S2"].text == LOCATION
    assert answers["S6"] is not None and answers["S6"].status is AnswerStatus.SKIPPED
    assert answers["S6"].reason == "Ran out of time; ask next week"
    assert run.started_by == world.therapist and run.run_id is not None

    # A later answer to the same item wins, the earlier one is kept (append-only).
    again = record_answers(store, world.therapist, first, "start", [AnswerInput("S6", "done")])
    s6 = next(s for s in again.items if s.item.key == "S6")
    assert s6.answer is not None and s6.answer.status is AnswerStatus.DONE and s6.answer.reason is None
    with store.session() as session:
        assert len(session.scalars(select(ChecklistAnswer).where(ChecklistAnswer.item_key == "S6")).all()) == 2


def test_s7_only_at_the_first_session_and_online_items_only_online(store: Store) -> None:
    world, (first, second, _third) = _sessions(store)
    assert "S7" in _keys(session_checklists(store, world.therapist, first).run(Phase.START).items)
    assert "S7" not in _keys(session_checklists(store, world.therapist, second).run(Phase.START).items)
    with pytest.raises(InvalidChecklist):
        record_answers(store, world.therapist, second, "start", [AnswerInput("S7", "done")])

    set_session_modality(store, world.therapist, second, "in_person")
    in_person = session_checklists(store, world.therapist, second)
    assert not in_person.online
    assert _keys(in_person.run(Phase.START).items) == ["S1", "S3"]
    assert "T1" not in _keys(in_person.run(Phase.PRE).items) and "T2" in _keys(in_person.run(Phase.PRE).items)


def test_a_cancelled_first_session_makes_the_next_one_the_first(store: Store) -> None:
    world, (first, second, _third) = _sessions(store)
    # Cancel the first occurrence at the source and sync.
    key = OccurrenceKey("weekly@test", recurrence_id_for(MONDAY))
    world.calendar.put(_occ(key, MONDAY, status=Status.CANCELLED))
    world.sync()
    assert "S7" in _keys(session_checklists(store, world.therapist, second).run(Phase.START).items)
    with pytest.raises(SessionCancelled):
        record_answers(store, world.therapist, first, "pre", [AnswerInput("T2", "done")])


def test_the_location_item_is_flagged_on_online_sessions_until_done(store: Store) -> None:
    world, (first, second, third) = _sessions(store)
    set_session_modality(store, world.therapist, third, "in_person")
    flags = open_flags(store, world.therapist)
    assert set(flags) == {first, second}  # the in-person session has no flag
    assert [(f.key, f.phase, f.skipped) for f in flags[first]] == [("S2", Phase.START, False)]

    record_answers(store, world.therapist, first, "start", [AnswerInput("S2", "skipped", reason="Client declined")])
    still = session_checklists(store, world.therapist, first).flags
    assert [(f.key, f.skipped) for f in still] == [("S2", True)]  # skipping does not answer it

    record_answers(store, world.therapist, first, "start", [AnswerInput("S2", "done", text=LOCATION)])
    assert session_checklists(store, world.therapist, first).flags == ()
    assert set(open_flags(store, world.therapist)) == {second}
    assert set(open_flags(store, world.therapist, [first, third])) == set()


def test_answer_texts_are_encrypted_with_the_client_key_and_bound_to_their_row(store: Store) -> None:
    world, (first, second, _third) = _sessions(store)
    record_answers(store, world.therapist, first, "start", [AnswerInput("S2", "done", text=LOCATION)])
    record_answers(store, world.therapist, second, "post", [AnswerInput("P5", "done", text="Safety plan reviewed")])
    dump = _raw_dump(store)
    for fragment in ("Calle Ficticia", "600 111 222", "Zaragoza", "Safety plan reviewed"):
        assert fragment.encode() not in dump
    # Destroying the client's key erases the texts but keeps the ticks.
    client_id = list_sessions(store, world.therapist)[0].client_id
    with store.session() as session:
        assert store.keyring.destroy(session, Owner("client", client_id))
    s2 = next(s for s in session_checklists(store, world.therapist, first).run(Phase.START).items if s.item.key == "S2")
    assert s2.answer is not None and s2.answer.erased and s2.answer.text is None
    assert s2.answer.status is AnswerStatus.DONE


def test_another_therapists_sessions_and_templates_are_unknown(store: Store) -> None:
    world, (first, *_rest) = _sessions(store)
    other = World(store, "other@alliance.test", "other")
    mine = list_templates(store, world.therapist)[0]
    with pytest.raises(UnknownTemplate):
        get_template(store, other.therapist, mine.id)
    with pytest.raises(UnknownSession):
        session_checklists(store, other.therapist, first)
    with pytest.raises(UnknownSession):
        record_answers(store, other.therapist, first, "pre", [AnswerInput("T2", "done")])
    assert open_flags(store, other.therapist) == {}
    # Editing one's own list never changes another therapist's.
    new_template_version(store, other.therapist, "pre", [ChecklistItem("T2", "Door closed.")])
    assert next(t for t in list_templates(store, world.therapist) if t.phase is Phase.PRE).version == 1


def test_defaults_are_worded_in_our_own_words_with_sources() -> None:
    # Every default item carries a text and, where the reference names sources, their numbers.
    for items in DEFAULTS.values():
        for item in items:
            assert item.text and item.text[0].isupper() and item.text.endswith(".")
    assert all(i.refs for i in DEFAULTS[Phase.START])


def test_the_batched_flag_listing_agrees_with_each_sessions_own_flags(store: Store) -> None:
    world, ids = _sessions(store, count=5)
    first, second, third, fourth, fifth = ids
    # A therapist-made blocking item in the pre list (version 2), and a run of the first session
    # started on version 1 (without it).
    record_answers(store, world.therapist, first, "pre", [AnswerInput("T2", "done")])
    pre = next(t for t in list_templates(store, world.therapist) if t.phase is Phase.PRE).items
    new_template_version(
        store,
        world.therapist,
        "pre",
        [*pre, ChecklistItem("T12", "Crisis line for the client's area noted.", blocking=True)],
    )
    post = next(t for t in list_templates(store, world.therapist) if t.phase is Phase.POST).items
    welcome = ChecklistItem("P8", "Welcome letter sent.", Applies.FIRST_SESSION, blocking=True)
    new_template_version(store, world.therapist, "post", [*post, welcome])
    record_answers(store, world.therapist, second, "start", [AnswerInput("S2", "done", text=LOCATION)])
    record_answers(store, world.therapist, third, "pre", [AnswerInput("T12", "skipped", reason="no signal")])
    set_session_modality(store, world.therapist, fourth, "in_person")
    key = OccurrenceKey("weekly@test", recurrence_id_for(MONDAY + timedelta(weeks=4)))
    world.calendar.put(_occ(key, MONDAY + timedelta(weeks=4), status=Status.CANCELLED))
    world.sync()

    batched = open_flags(store, world.therapist)
    one_by_one = {sid: list(f) for sid in ids if (f := session_checklists(store, world.therapist, sid).flags)}
    assert batched == one_by_one
    assert {sid: [(f.phase.value, f.key, f.skipped) for f in flags] for sid, flags in batched.items()} == {
        first: [("start", "S2", False), ("post", "P8", False)],  # its pre run is on version 1: no T12
        second: [("pre", "T12", False)],
        third: [("pre", "T12", True), ("start", "S2", False)],
    }
    # A window picks the sessions overlapping it.
    window = open_flags(store, world.therapist, start=MONDAY + timedelta(weeks=1), end=MONDAY + timedelta(weeks=2))
    assert set(window) == {second}
    assert fifth not in batched and fourth not in batched
