"""Pages finished by the engine's writer thread still commit one at a time, in order, all or nothing.

The engine decides a page (and the source fetches the next) while a writer thread inserts the
previous page's history and outbox rows and commits it. Another connection must never see a page
half written, a page before the one preceding it, or the cursor before the last page; a failure on
either thread must leave whole pages only, and a new run must converge.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, insert, select

from core.mirror import add_connection, ensure_therapist
from core.store import Occurrence, OccurrenceHistory, OutboxEvent, Store
from core.store.models import Connection
from core.sync import ChangePage, OccurrenceKey, RemoteOccurrence, SourceError, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider

PAGE = 7
PAGES = 4
BASE = datetime(2026, 12, 1, 9, tzinfo=UTC)


@dataclass(frozen=True)
class View:
    occurrences: int
    history: int
    outbox: int
    cursor: str | None


def _view(store: Store, connection: int) -> View:
    # What another connection (the web process, the outbox relay) sees at this moment.
    with store.session() as session:
        return View(
            session.scalar(select(func.count()).select_from(Occurrence)) or 0,
            session.scalar(select(func.count()).select_from(OccurrenceHistory)) or 0,
            session.scalar(select(func.count()).select_from(OutboxEvent)) or 0,
            session.scalar(select(Connection.cursor).where(Connection.id == connection)),
        )


def _calendar() -> MemoryCalendar:
    cal = MemoryCalendar()
    for i in range(PAGE * PAGES):
        start = BASE + timedelta(hours=i)
        cal.put(RemoteOccurrence(key=OccurrenceKey(f"w{i}@test"), start=start, end=start + timedelta(minutes=50)))
    return cal


@pytest.fixture
def connection(store: Store) -> int:
    return add_connection(store, ensure_therapist(store, "writer@test"), "memory", "m", {})


def test_every_commit_shows_whole_pages_in_order_and_the_cursor_last(store: Store, connection: int) -> None:
    views: list[tuple[str, View]] = []
    fetched: list[View] = []
    provider = MemoryProvider(_calendar(), page_size=PAGE)

    class Watching:
        def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
            for page in provider.list_changes(cursor):
                fetched.append(_view(store, connection))
                yield page

    report = sync_connection(
        store, connection, Watching(), checkpoint=lambda name: views.append((name, _view(store, connection)))
    )
    assert report.created == PAGE * PAGES and report.pages == PAGES
    for n in range(PAGES):
        (before, seen_before), (after, seen_after) = views[2 * n], views[2 * n + 1]
        assert (before, after) == ("before_commit", "after_commit")
        # Before page n commits, exactly the pages before it are visible, each with its rows.
        assert seen_before == View(PAGE * n, PAGE * n, PAGE * n, None)
        last = n == PAGES - 1
        assert seen_after.occurrences == seen_after.history == seen_after.outbox == PAGE * (n + 1)
        assert (seen_after.cursor is not None) is last
    # A page may be fetched while the one before it commits, never before the one before that.
    for n, seen in enumerate(fetched):
        assert seen.occurrences in (PAGE * max(n - 1, 0), PAGE * n)


@pytest.mark.parametrize("page", [1, 2, 4])
def test_a_failed_commit_keeps_the_pages_before_it_and_a_new_run_converges(
    store: Store, connection: int, page: int
) -> None:
    cal = _calendar()
    commits = 0

    def fail_on_page(name: str) -> None:
        nonlocal commits
        if name == "before_commit":
            commits += 1
            if commits == page:
                raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        sync_connection(store, connection, MemoryProvider(cal, page_size=PAGE), checkpoint=fail_on_page)
    done = PAGE * (page - 1)
    assert _view(store, connection) == View(done, done, done, None)
    report = sync_connection(store, connection, MemoryProvider(cal, page_size=PAGE))
    assert report.created == PAGE * PAGES - done
    assert _view(store, connection).occurrences == PAGE * PAGES


def test_a_source_failing_while_a_page_commits_keeps_that_page(store: Store, connection: int) -> None:
    cal = _calendar()
    provider = MemoryProvider(cal, page_size=PAGE)

    class Broken:
        def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
            for n, page in enumerate(provider.list_changes(cursor)):
                if n == 2:
                    raise SourceError("connection reset")
                yield page

    with pytest.raises(SourceError, match="connection reset"):
        sync_connection(store, connection, Broken())
    # The second page was being committed when the third failed to arrive: it is kept whole.
    assert _view(store, connection) == View(2 * PAGE, 2 * PAGE, 2 * PAGE, None)
    with store.session() as session:
        lease = session.scalar(select(Connection.lock_owner).where(Connection.id == connection))
    assert lease is None
    assert sync_connection(store, connection, provider).created == 2 * PAGE


def test_a_mirror_holding_sqlites_largest_rowid_still_syncs(sqlite_store: Store) -> None:
    # Above the largest rowid SQLite numbers new rows at random: they cannot be numbered in
    # advance, and are read back instead.
    therapist = ensure_therapist(sqlite_store, "rowid@test")
    other = add_connection(sqlite_store, therapist, "memory", "other", {})
    with sqlite_store.session() as session:
        session.execute(
            insert(Occurrence).values(
                id=2**63 - 1,
                connection_id=other,
                ical_uid="top@test",
                recurrence_id="",
                status="confirmed",
                all_day=False,
                start_utc=BASE,
                end_utc=BASE,
                content=b"x",
                content_hash="0" * 64,
                created_at=BASE,
                updated_at=BASE,
            )
        )
    connection = add_connection(sqlite_store, therapist, "memory", "mine", {})
    report = sync_connection(sqlite_store, connection, MemoryProvider(_calendar(), page_size=PAGE))
    assert report.created == PAGE * PAGES
    with sqlite_store.session() as session:
        ids = set(session.scalars(select(Occurrence.id).where(Occurrence.connection_id == connection)))
        history = set(session.scalars(select(OccurrenceHistory.occurrence_id)))
        events = set(session.scalars(select(OutboxEvent.occurrence_id)))
    assert len(ids) == PAGE * PAGES and history == events == ids


def test_an_in_memory_sqlite_store_is_finished_in_the_syncing_thread() -> None:
    # Each thread has its own in-memory database there: the writer thread could not finish a page.
    from sqlalchemy import create_engine

    from core.store.db import upgrade
    from tests.conftest import test_keyring

    engine = create_engine("sqlite://")
    upgrade(engine)
    store = Store(engine, keyring=test_keyring())
    try:
        connection = add_connection(store, ensure_therapist(store, "memory@test"), "memory", "m", {})
        report = sync_connection(store, connection, MemoryProvider(_calendar(), page_size=PAGE))
        assert report.created == PAGE * PAGES and report.pages == PAGES
        assert _view(store, connection).outbox == PAGE * PAGES
    finally:
        store.close()
