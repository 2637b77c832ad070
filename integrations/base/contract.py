"""The contract suite every calendar provider must pass (vdirsyncer's StorageTests idea).

Use it from a test module::

    class TestMyProvider(CalendarProviderContract):
        @pytest.fixture
        def harness(self, tmp_path): return MyHarness(tmp_path)

The harness edits the source the way a therapist would in their calendar app; the suite checks
what the provider lists and what the engine mirrors. It needs a ``store`` fixture (an empty,
migrated :class:`core.store.Store`), which Alliance's own ``tests/conftest.py`` provides.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Protocol

import pytest

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from core.sync import ChangePage, OccurrenceKey, Status, sync_connection
from integrations.base.protocol import CalendarProvider
from integrations.base.registry import check_provider


class SourceHarness(Protocol):
    """Edits one source calendar and builds providers that read it."""

    def provider(self) -> CalendarProvider:
        """A provider reading the source as it is now."""
        ...

    def add_event(self, uid: str, start: datetime, end: datetime, title: str) -> None: ...

    def move_event(self, uid: str, start: datetime, end: datetime) -> None: ...

    def rename_event(self, uid: str, title: str) -> None: ...

    def delete_event(self, uid: str) -> None: ...

    def expire_cursor(self) -> bool:
        """Make the source reject cursors handed out so far; False if it has no cursors to expire."""
        ...


def _slot(day: int, hour: int = 10) -> tuple[datetime, datetime]:
    # Relative to now so window-limited providers (ICS) always see the events.
    base = datetime.now(UTC).replace(hour=hour, minute=0, second=0, microsecond=0)
    start = base + timedelta(days=day)
    return start, start + timedelta(minutes=50)


def _all_upserts(pages: list[ChangePage]) -> list[OccurrenceKey]:
    return [o.key for p in pages for o in p.upserts]


class CalendarProviderContract:
    """Behaviour every provider shares; subclasses provide the ``harness`` fixture."""

    @pytest.fixture
    def harness(self) -> SourceHarness:
        raise NotImplementedError("a provider's contract test must provide a 'harness' fixture")

    def _connect(self, store: Store) -> int:
        therapist = ensure_therapist(store, "contract@example.org")
        return add_connection(store, therapist, "contract", "contract", {})

    def _mirror(self, store: Store) -> dict[str, tuple[datetime, datetime, str]]:
        return {o.uid: (o.start, o.end, o.title) for o in list_occurrences(store) if o.status is not Status.CANCELLED}

    def test_provider_class_passes_the_registry_check(self, harness: SourceHarness) -> None:
        provider = harness.provider()
        check_provider(type(provider), "contract test")

    def test_full_listing_shows_every_event_once_with_utc_instants(self, harness: SourceHarness) -> None:
        for day in (1, 2, 3):
            harness.add_event(f"contract-{day}@alliance.test", *_slot(day), f"Session {day}")
        pages = list(harness.provider().list_changes(None))
        keys = _all_upserts(pages)
        assert sorted(k.ical_uid for k in keys) == [f"contract-{d}@alliance.test" for d in (1, 2, 3)]
        assert [p.is_last for p in pages] == [False] * (len(pages) - 1) + [True]
        assert all(p.complete for p in pages)
        for occ in (o for p in pages for o in p.upserts):
            assert occ.start.utcoffset() == timedelta(0)
            assert occ.end > occ.start

    def test_mirror_matches_source_and_resync_is_a_no_op(self, harness: SourceHarness, store: Store) -> None:
        expected = {}
        for day in (1, 2):
            start, end = _slot(day)
            harness.add_event(f"c{day}@alliance.test", start, end, f"S{day}")
            expected[f"c{day}@alliance.test"] = (start, end, f"S{day}")
        conn = self._connect(store)
        first = sync_connection(store, conn, harness.provider())
        assert first.created == 2
        assert self._mirror(store) == expected
        again = sync_connection(store, conn, harness.provider())
        assert again.changes == 0
        assert again.unchanged in (0, 2)  # a delta source lists nothing; a full one lists both

    def test_a_move_is_a_reschedule_of_the_same_occurrence(self, harness: SourceHarness, store: Store) -> None:
        harness.add_event("m@alliance.test", *_slot(2), "S")
        harness.add_event("keep@alliance.test", *_slot(3), "K")
        conn = self._connect(store)
        sync_connection(store, conn, harness.provider())
        before = {o.uid: o.id for o in list_occurrences(store)}
        new_start, new_end = _slot(4, hour=17)
        harness.move_event("m@alliance.test", new_start, new_end)
        report = sync_connection(store, conn, harness.provider())
        assert report.rescheduled == 1 and report.created == 0
        after = {o.uid: o for o in list_occurrences(store)}
        assert after["m@alliance.test"].id == before["m@alliance.test"]
        assert (after["m@alliance.test"].start, after["m@alliance.test"].end) == (new_start, new_end)

    def test_a_rename_is_an_update(self, harness: SourceHarness, store: Store) -> None:
        harness.add_event("r@alliance.test", *_slot(2), "Before")
        conn = self._connect(store)
        sync_connection(store, conn, harness.provider())
        harness.rename_event("r@alliance.test", "After")
        report = sync_connection(store, conn, harness.provider())
        assert report.updated == 1
        assert self._mirror(store)["r@alliance.test"][2] == "After"

    def test_a_deleted_event_is_cancelled_not_removed(self, harness: SourceHarness, store: Store) -> None:
        harness.add_event("gone@alliance.test", *_slot(2), "G")
        harness.add_event("stays@alliance.test", *_slot(3), "S")
        conn = self._connect(store)
        sync_connection(store, conn, harness.provider())
        harness.delete_event("gone@alliance.test")
        report = sync_connection(store, conn, harness.provider())
        assert report.cancelled == 1
        everything = {o.uid: o.status for o in list_occurrences(store, include_cancelled=True)}
        assert everything == {"gone@alliance.test": Status.CANCELLED, "stays@alliance.test": Status.CONFIRMED}

    def test_an_expired_cursor_falls_back_to_a_full_listing(self, harness: SourceHarness, store: Store) -> None:
        harness.add_event("e1@alliance.test", *_slot(2), "E1")
        conn = self._connect(store)
        sync_connection(store, conn, harness.provider())
        harness.add_event("e2@alliance.test", *_slot(3), "E2")
        if not harness.expire_cursor():
            pytest.skip("this source hands out no cursor that can expire")
        report = sync_connection(store, conn, harness.provider())
        assert report.full_resync
        assert report.created == 1
        assert sorted(self._mirror(store)) == ["e1@alliance.test", "e2@alliance.test"]
