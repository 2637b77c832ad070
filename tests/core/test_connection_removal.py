"""Removing a connection: hidden everywhere, never synced again, nothing mirrored deleted; migration 0007."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, select

from alliance.settings import Settings
from alliance.syncing import sync_all, sync_one
from core.clients import UnknownEvent, apply_rules_for_therapist, assign_event, create_client, get_session
from core.mirror import (
    ConnectionNameTaken,
    add_connection,
    ensure_therapist,
    get_connection,
    get_occurrence,
    list_connections,
    list_occurrences,
    remove_connection,
    rename_connection,
)
from core.store import Store
from core.store.db import make_engine
from core.store.models import Connection, Occurrence
from core.sync import ConnectionGone, OccurrenceKey, RemoteOccurrence, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider
from tests.conftest import TEST_MASTER_KEY
from tests.portal.feeds import Event, ics

START = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


def _connected(store: Store, therapist: int, name: str = "work") -> tuple[int, MemoryCalendar]:
    calendar = MemoryCalendar()
    for i, uid in enumerate(("a@test", "b@test")):
        start = START + timedelta(days=i)
        calendar.put(
            RemoteOccurrence(
                key=OccurrenceKey(uid, ""), start=start, end=start + timedelta(minutes=50), title=f"event {uid}"
            )
        )
    connection = add_connection(store, therapist, "memory", name, {"calendar": name})
    sync_connection(store, connection, MemoryProvider(calendar))
    return connection, calendar


def test_a_removed_connection_and_its_occurrences_leave_every_listing(store: Store) -> None:
    therapist = ensure_therapist(store, "t@alliance.test")
    removed, _ = _connected(store, therapist)
    kept, _ = _connected(store, therapist, "home")
    gone = list_occurrences(store, therapist_id=therapist, include_cancelled=True)[0]
    assert gone.connection_id == removed

    assert remove_connection(store, therapist, removed)
    assert [c.id for c in list_connections(store, therapist)] == [kept]
    assert [c.id for c in list_connections(store)] == [kept]
    assert get_connection(store, therapist, removed) is None
    assert {o.connection_id for o in list_occurrences(store, include_cancelled=True)} == {kept}
    assert get_occurrence(store, therapist, gone.id) is None
    assert not remove_connection(store, therapist, removed)  # a second removal finds nothing

    with store.session() as session:  # soft: every mirrored row is still there
        row = session.get_one(Connection, removed)
        assert row.removed_at is not None and row.credentials is None and row.cursor is None
        assert len(session.scalars(select(Occurrence.id).where(Occurrence.connection_id == removed)).all()) == 2


def test_only_the_owner_removes_or_renames(store: Store) -> None:
    owner = ensure_therapist(store, "owner@alliance.test")
    other = ensure_therapist(store, "other@alliance.test")
    connection, _ = _connected(store, owner)
    assert not remove_connection(store, other, connection)
    assert not rename_connection(store, other, connection, "mine")
    assert get_connection(store, other, connection) is None
    assert get_connection(store, owner, connection) is not None


def test_a_removed_connection_frees_its_name(store: Store) -> None:
    therapist = ensure_therapist(store, "t@alliance.test")
    first, _ = _connected(store, therapist)
    with pytest.raises(ConnectionNameTaken):
        add_connection(store, therapist, "memory", "work", {"calendar": "x"})
    remove_connection(store, therapist, first)
    assert add_connection(store, therapist, "memory", "work", {"calendar": "x"}) != first
    other = add_connection(store, therapist, "memory", "other", {"calendar": "y"})
    with pytest.raises(ConnectionNameTaken):
        rename_connection(store, therapist, other, "work")


def test_a_removed_connection_is_never_synced_again(store: Store, tmp_path: Path) -> None:
    therapist = ensure_therapist(store, "t@alliance.test")
    feed = tmp_path / "cal.ics"
    feed.write_bytes(ics(Event("x@test", START, "x")))
    connection = add_connection(store, therapist, "ics", "file", {"source": str(feed)})
    settings = Settings(home=tmp_path, master_key=TEST_MASTER_KEY, timezone="UTC")  # type: ignore[arg-type]
    view = get_connection(store, therapist, connection)
    assert view is not None and sync_one(store, settings, view).ok
    remove_connection(store, therapist, connection)

    with pytest.raises(ConnectionGone):
        sync_connection(store, connection, MemoryProvider(MemoryCalendar()))
    # A sync that listed the connection before it was removed finds it gone, and says so.
    outcome = sync_one(store, settings, view)
    assert outcome.failure == "gone" and outcome.report is None
    # The periodic job does not even try.
    assert sync_all(store, settings) == []


def test_events_of_a_removed_connection_are_not_assigned(store: Store) -> None:
    therapist = ensure_therapist(store, "t@alliance.test")
    connection, _ = _connected(store, therapist)
    code = create_client(store, therapist).code
    session = assign_event(store, therapist, "a@test", code).session
    assert session is not None
    remove_connection(store, therapist, connection)

    with pytest.raises(UnknownEvent):
        assign_event(store, therapist, "b@test", code)
    assert apply_rules_for_therapist(store, therapist) == 0
    # The session made before stays: it is the record of the therapy.
    assert get_session(store, therapist, session.id).uid == "a@test"


def test_migration_0007_adds_and_drops_removed_at(tmp_path: Path) -> None:
    from alembic import command

    from core.store.db import alembic_config

    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")
    config = alembic_config(engine)
    command.upgrade(config, "0006_merge")
    assert "removed_at" not in {c["name"] for c in inspect(engine).get_columns("connections")}
    command.upgrade(config, "heads")
    assert "removed_at" in {c["name"] for c in inspect(engine).get_columns("connections")}
    command.downgrade(config, "0006_merge")
    assert "removed_at" not in {c["name"] for c in inspect(engine).get_columns("connections")}
    engine.dispose()
