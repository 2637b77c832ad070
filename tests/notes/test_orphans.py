"""Sessions and notes outlive their calendar event and connection; the same calendar reconnected re-links them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import select

from core.clients import assign_event, handle_outbox_event, list_sessions
from core.mirror import add_connection, remove_connection
from core.notes import create_note, list_notes, relink_orphaned_session, session_ref
from core.store import OutboxEvent, Store
from tests.notes.helpers import MONDAY, NotesWorld

Handler = Callable[[Store, str, int], object]


def _rules(store: Store, kind: str, occurrence_id: int) -> object:
    return handle_outbox_event(store, kind, occurrence_id)


def _relink(store: Store, kind: str, occurrence_id: int) -> object:
    return relink_orphaned_session(store, occurrence_id) if kind in ("occurrence.created", "occurrence.restored") else 0


def _deliver(world: NotesWorld, handlers: list[Handler]) -> None:
    """Every new outbox event to each handler, in the given order (the job runner promises none)."""
    with world.store.session() as session:
        events = session.execute(
            select(OutboxEvent.id, OutboxEvent.kind, OutboxEvent.occurrence_id)
            .where(OutboxEvent.id > world.outbox_seen)
            .order_by(OutboxEvent.id)
        ).all()
    for event_id, kind, occurrence_id in events:
        for handler in handlers:
            if occurrence_id is not None:
                handler(world.store, kind, occurrence_id)
        world.outbox_seen = event_id


def _reconnect(world: NotesWorld) -> None:
    assert remove_connection(world.store, world.therapist, world.connection)
    world.connection = add_connection(world.store, world.therapist, "memory", "work", {"calendar": "work"})
    world.sync()


def test_a_removed_connection_keeps_sessions_and_notes_and_no_sync_deletes_them(store: Store) -> None:
    world = NotesWorld(store)
    sid = world.session(world.client(), uid="kept@test", start=MONDAY)
    create_note(store, world.actor, sid, "survives")
    assert remove_connection(store, world.therapist, world.connection)
    ref = session_ref(store, world.actor, sid)
    assert ref.event_removed and ref.start == MONDAY
    assert [s.id for s in list_sessions(store, world.therapist)] == [sid]
    assert [n.text for n in list_notes(store, world.actor, sid)] == ["survives"]


@pytest.mark.parametrize("order", ["rules first", "relink first"])
def test_reconnecting_the_same_calendar_relinks_sessions_with_their_notes(store: Store, order: str) -> None:
    world = NotesWorld(store)
    # The attendee rule would also claim the re-mirrored event for a new session.
    client = world.client(email="client@example.org")
    world.put("weekly@test", MONDAY, recurring=True, attendees=("client@example.org",))
    world.sync()
    _deliver(world, [_rules])
    [before] = list_sessions(store, world.therapist)
    note = create_note(store, world.actor, before.id, "keep me attached")
    assert before.client_code == client.code

    _reconnect(world)
    _deliver(world, [_rules, _relink] if order == "rules first" else [_relink, _rules])

    [after] = list_sessions(store, world.therapist)
    assert after.id == before.id and after.connection_id == world.connection and after.start == MONDAY
    assert not session_ref(store, world.actor, before.id).event_removed
    assert [(n.id, n.text) for n in list_notes(store, world.actor, before.id)] == [(note.id, "keep me attached")]
    # Idempotent: delivering again changes nothing.
    assert relink_orphaned_session(store, after.occurrence_id) is False


def test_a_new_session_with_notes_of_its_own_is_never_thrown_away(store: Store) -> None:
    world = NotesWorld(store)
    world.client(email="client@example.org")
    world.put("one@test", MONDAY, attendees=("client@example.org",))
    world.sync()
    _deliver(world, [_rules])
    [old] = list_sessions(store, world.therapist)
    create_note(store, world.actor, old.id, "old note")
    _reconnect(world)
    _deliver(world, [_rules])
    new = next(s for s in list_sessions(store, world.therapist) if s.id != old.id)
    create_note(store, world.actor, new.id, "new note")
    _deliver(world, [_relink])
    world.outbox_seen = 0
    _deliver(world, [_relink])  # redelivered: still nothing lost
    assert {s.id for s in list_sessions(store, world.therapist)} == {old.id, new.id}
    assert [n.text for n in list_notes(store, world.actor, old.id)] == ["old note"]
    assert [n.text for n in list_notes(store, world.actor, new.id)] == ["new note"]
    assert session_ref(store, world.actor, old.id).event_removed


@pytest.mark.parametrize("order", ["rules first", "relink first"])
def test_a_series_assigned_to_a_client_follows_the_same_calendar_reconnected(store: Store, order: str) -> None:
    world = NotesWorld(store)
    client = world.client()
    world.weekly("series@test", MONDAY, 4)
    world.sync()
    assign_event(store, world.therapist, "series@test", client.code, from_start=MONDAY)
    before = sorted(list_sessions(store, world.therapist), key=lambda s: s.start)
    assert len(before) == 4
    first = create_note(store, world.actor, before[0].id, "week one")
    third = create_note(store, world.actor, before[2].id, "week three")

    _reconnect(world)
    _deliver(world, [_rules, _relink] if order == "rules first" else [_relink, _rules])

    after = sorted(list_sessions(store, world.therapist), key=lambda s: s.start)
    # The same four sessions (the notes' rows), now on the live calendar, none left behind.
    assert [s.id for s in after] == [s.id for s in before]
    assert {s.connection_id for s in after} == {world.connection}
    assert [(n.id, n.text) for n in list_notes(store, world.actor, before[0].id)] == [(first.id, "week one")]
    assert [(n.id, n.text) for n in list_notes(store, world.actor, before[2].id)] == [(third.id, "week three")]
    assert not any(session_ref(store, world.actor, s.id).event_removed for s in after)

    # The assignment itself followed: a week synced after the reconnect is the client's session.
    world.put("series@test", MONDAY + timedelta(weeks=4), recurring=True)
    world.sync()
    _deliver(world, [_rules, _relink] if order == "rules first" else [_relink, _rules])
    later = sorted(list_sessions(store, world.therapist), key=lambda s: s.start)
    assert len(later) == 5 and later[-1].client_code == client.code
    assert later[-1].start == MONDAY + timedelta(weeks=4)
    # Redelivering everything changes nothing.
    world.outbox_seen = 0
    _deliver(world, [_relink, _rules])
    assert [s.id for s in sorted(list_sessions(store, world.therapist), key=lambda s: s.start)] == [s.id for s in later]
