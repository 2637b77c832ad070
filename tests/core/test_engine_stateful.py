"""The whole sync engine as a hypothesis state machine (STYLE.md item 4).

Random edits of a :class:`MemoryCalendar` (single events, instances of series, moves, renames,
cancellations, deletions, undeletions, spurious re-puts, expired cursors) interleave with syncs
of random page sizes, some of them crashed at a random point. After every successful sync the
mirror equals the calendar and a re-sync is a no-op; at every point history is complete and
consistent and the outbox holds exactly one event per history row that emits one.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
from sqlalchemy import select

from core.mirror import add_connection, ensure_therapist, read_content
from core.store import Connection, Occurrence, OccurrenceHistory, OutboxEvent, Store, make_engine
from core.sync import (
    ChangePage,
    EmptySourceRefused,
    OccurrenceKey,
    RemoteOccurrence,
    SourceError,
    Status,
    recurrence_id_for,
    sync_connection,
)
from integrations.base import MemoryCalendar, MemoryProvider
from tests.conftest import test_keyring

BASE = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
SINGLE_UIDS = [f"single-{i}@example.org" for i in range(4)]
SERIES_UIDS = ["weekly@example.org", "biweekly@example.org"]
TITLES = st.sampled_from(["Session", "Intake", "Supervision", "Session (moved)", ""])
PAGE_SIZES = st.integers(min_value=1, max_value=4)
# Crash points: the memory calendar fails after N pages, or the engine dies at the Nth
# "before_commit" (rolled back) or "after_commit" (committed, then killed).
CRASHES = st.one_of(
    st.tuples(st.just("pages"), st.integers(min_value=0, max_value=3)),
    st.tuples(st.sampled_from(["before_commit", "after_commit"]), st.integers(min_value=1, max_value=4)),
)


class Crash(Exception):
    """The process died at a checkpoint."""


class CrashAt:
    """A ``checkpoint`` hook that kills the sync at the ``n``-th ``stage``."""

    def __init__(self, stage: str, n: int) -> None:
        self.stage, self.n, self.calls = stage, n, 0

    def __call__(self, name: str) -> None:
        if name == self.stage:
            self.calls += 1
            if self.calls == self.n:
                raise Crash(f"killed at {name} #{self.n}")


class CompleteListing:
    """Lists the calendar completely whatever the cursor: a full re-sync of the same data."""

    def __init__(self, provider: MemoryProvider) -> None:
        self.provider = provider

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        return self.provider.list_changes(None)


@dataclass(frozen=True)
class MirrorState:
    rows: dict[OccurrenceKey, tuple[int, str, datetime, datetime, str]]  # id, status, start, end, title
    history: list[tuple[int, str, datetime | None, datetime | None, datetime | None, datetime | None]]
    outbox: list[tuple[int | None, str, str, dict[str, Any]]]
    cursor: str | None
    health: str
    lock_owner: str | None

    def view(self, key: OccurrenceKey) -> tuple[Any, ...] | None:
        """What a therapist sees of ``key``: its slot and title, or merely that it is cancelled."""
        row = self.rows.get(key)
        if row is None:
            return None
        _id, status, start, end, title = row
        return ("cancelled",) if status == Status.CANCELLED else (status, start, end, title)


def read_mirror(store: Store, connection_id: int) -> MirrorState:
    with store.session() as s:
        rows = {
            OccurrenceKey(o.ical_uid, o.recurrence_id): (
                o.id,
                o.status,
                o.start_utc,
                o.end_utc,
                read_content(store, s, o).title,  # mirrored content is encrypted at rest
            )
            for o in s.scalars(select(Occurrence).where(Occurrence.connection_id == connection_id))
        }
        history = [
            (h.occurrence_id, h.kind, h.old_start_utc, h.old_end_utc, h.new_start_utc, h.new_end_utc)
            for h in s.scalars(
                select(OccurrenceHistory)
                .join(Occurrence, Occurrence.id == OccurrenceHistory.occurrence_id)
                .where(Occurrence.connection_id == connection_id)
                .order_by(OccurrenceHistory.id)
            )
        ]
        outbox = [
            (e.occurrence_id, e.kind, e.event_id, e.payload)
            for e in s.scalars(
                select(OutboxEvent).where(OutboxEvent.connection_id == connection_id).order_by(OutboxEvent.id)
            )
        ]
        c = s.get_one(Connection, connection_id)
        # Belt and braces over the unique constraint: the dict above would hide a duplicate.
        identities = s.execute(
            select(Occurrence.ical_uid, Occurrence.recurrence_id).where(Occurrence.connection_id == connection_id)
        ).all()
    duplicates = [k for k, n in Counter(map(tuple, identities)).items() if n > 1]
    assert not duplicates, f"identities with more than one row: {duplicates}"
    return MirrorState(rows, history, outbox, c.cursor, c.health, c.lock_owner)


def target_view(cal: MemoryCalendar, key: OccurrenceKey) -> tuple[Any, ...]:
    """What the mirror must show for ``key`` once it caught up with ``cal`` (gone means cancelled)."""
    item = cal.items.get(key)
    if item is None or item.status is Status.CANCELLED:
        return ("cancelled",)
    return (item.status.value, item.start, item.end, item.title)


class SyncMachine(RuleBasedStateMachine):
    """One connection mirroring one memory calendar, on a fresh database."""

    def __init__(self, open_store: Callable[[], tuple[Store, Callable[[], None]]]) -> None:
        super().__init__()
        self.store, self._cleanup = open_store()
        therapist = ensure_therapist(self.store, "dr.berger@example.org")
        self.cid = add_connection(self.store, therapist, "memory", "Practice", {"calendar": "practice"})
        self.cal = MemoryCalendar()
        self.graveyard: dict[OccurrenceKey, RemoteOccurrence] = {}  # last live version of removed keys
        self.ever_put: set[OccurrenceKey] = set()

    def teardown(self) -> None:
        try:
            # Whatever happened last (a crash, a refusal), one more sync converges.
            sync_connection(self.store, self.cid, MemoryProvider(self.cal), force_empty=True)
            self._check_converged(page_size=50)
        finally:
            self._cleanup()

    # --- edits of the calendar ----------------------------------------------------------------

    def _put(self, occ: RemoteOccurrence) -> None:
        self.cal.put(occ)
        self.ever_put.add(occ.key)
        if occ.status is not Status.CANCELLED:
            self.graveyard.pop(occ.key, None)

    def _live_keys(self) -> list[OccurrenceKey]:
        return sorted(k for k, o in self.cal.items.items() if o.status is not Status.CANCELLED)

    @initialize(n=st.integers(min_value=0, max_value=5), title=TITLES)
    def some_events(self, n: int, title: str) -> None:
        for i in range(n):
            start = BASE + timedelta(hours=3 * i)
            self._put(
                RemoteOccurrence(
                    OccurrenceKey(SINGLE_UIDS[i % 4], ""), start, start + timedelta(minutes=50), title=title
                )
            )

    @rule(
        uid=st.sampled_from(SINGLE_UIDS),
        hour=st.integers(min_value=0, max_value=72),
        minutes=st.sampled_from([30, 50, 90]),
        title=TITLES,
    )
    def add_single(self, uid: str, hour: int, minutes: int, title: str) -> None:
        start = BASE + timedelta(hours=hour)
        self._put(RemoteOccurrence(OccurrenceKey(uid), start, start + timedelta(minutes=minutes), title=title))

    @rule(
        uid=st.sampled_from(SERIES_UIDS),
        week=st.integers(min_value=0, max_value=3),
        title=TITLES,
        cancelled=st.booleans(),
    )
    def add_instance(self, uid: str, week: int, title: str, cancelled: bool) -> None:
        # An instance of a series, possibly an already cancelled exception (EXDATE-like override).
        original = BASE + timedelta(days=1, weeks=week, hours=SERIES_UIDS.index(uid))
        key = OccurrenceKey(uid, recurrence_id_for(original))
        status = Status.CANCELLED if cancelled else Status.CONFIRMED
        self._put(RemoteOccurrence(key, original, original + timedelta(minutes=50), status=status, title=title))

    @precondition(lambda self: self._live_keys())
    @rule(data=st.data(), hours=st.integers(min_value=-30, max_value=30).filter(bool), longer=st.booleans())
    def move(self, data: st.DataObject, hours: int, longer: bool) -> None:
        old = self.cal.items[data.draw(st.sampled_from(self._live_keys()))]
        start = old.start + timedelta(hours=hours)
        end = start + (old.end - old.start) + (timedelta(minutes=10) if longer else timedelta(0))
        self._put(replace(old, start=start, end=end))

    @precondition(lambda self: self._live_keys())
    @rule(data=st.data(), title=TITLES)
    def retitle(self, data: st.DataObject, title: str) -> None:
        self._put(replace(self.cal.items[data.draw(st.sampled_from(self._live_keys()))], title=title))

    @precondition(lambda self: self._live_keys())
    @rule(data=st.data())
    def toggle_tentative(self, data: st.DataObject) -> None:
        old = self.cal.items[data.draw(st.sampled_from(self._live_keys()))]
        flipped = Status.CONFIRMED if old.status is Status.TENTATIVE else Status.TENTATIVE
        self._put(replace(old, status=flipped))

    @precondition(lambda self: self._live_keys())
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        old = self.cal.items[data.draw(st.sampled_from(self._live_keys()))]
        self.graveyard[old.key] = old
        self.cal.put(replace(old, status=Status.CANCELLED))

    @precondition(lambda self: self.cal.items)
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(self.cal.items)))
        if self.cal.items[key].status is not Status.CANCELLED:
            self.graveyard[key] = self.cal.items[key]
        self.cal.delete(key)

    @precondition(lambda self: self.cal.items)
    @rule()
    def delete_everything(self) -> None:
        # A broken export or a wrong feed URL: the source suddenly lists nothing.
        for key in sorted(self.cal.items):
            if self.cal.items[key].status is not Status.CANCELLED:
                self.graveyard[key] = self.cal.items[key]
            self.cal.delete(key)

    @precondition(lambda self: self.graveyard)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        # Undo in the calendar app: the deleted or cancelled key comes back as it was.
        self._put(self.graveyard[data.draw(st.sampled_from(sorted(self.graveyard)))])

    @precondition(lambda self: self.cal.items)
    @rule(data=st.data(), new_provider_id=st.booleans())
    def spurious_change(self, data: st.DataObject, new_provider_id: bool) -> None:
        # Same content again (new etag / sequence), possibly under a new provider id.
        old = self.cal.items[data.draw(st.sampled_from(sorted(self.cal.items)))]
        self.cal.put(replace(old, provider_id=f"p{self.cal.seq}") if new_provider_id else old)

    @rule()
    def expire_cursors(self) -> None:
        self.cal.expire_cursors()

    # --- syncs -------------------------------------------------------------------------------

    @rule(page_size=PAGE_SIZES, force_empty=st.booleans())
    def sync(self, page_size: int, force_empty: bool) -> None:
        before = read_mirror(self.store, self.cid)
        try:
            report = sync_connection(self.store, self.cid, MemoryProvider(self.cal, page_size), force_empty=force_empty)
        except EmptySourceRefused:
            event("sync refused (empty source)")
            self._check_refusal(before)
            return
        event(f"sync converged: {min(report.pages, 3)} page(s), {'changes' if report.changes else 'no-op'}")
        self._check_converged(page_size)

    @rule(page_size=PAGE_SIZES, crash=CRASHES, force_empty=st.booleans())
    def sync_with_crash(self, page_size: int, crash: tuple[str, int], force_empty: bool) -> None:
        stage, n = crash
        hook = None
        if stage == "pages":
            self.cal.fail_after_pages = n
        else:
            hook = CrashAt(stage, n)
        before = read_mirror(self.store, self.cid)
        provider = MemoryProvider(self.cal, page_size)
        try:
            sync_connection(self.store, self.cid, provider, checkpoint=hook, force_empty=force_empty)
        except EmptySourceRefused:
            event("sync refused (empty source)")
            self._check_refusal(before)
            return
        except (Crash, SourceError):
            event(f"crashed: {stage}")
            self._check_crashed(before)
            return
        finally:
            # The fault is armed for this sync only (a listing shorter than n pages never fires it).
            self.cal.fail_after_pages = None
        # The crash point lay beyond the end of this sync: it simply succeeded.
        event("crash point not reached")
        self._check_converged(page_size)

    # --- what must hold ----------------------------------------------------------------------

    def _check_converged(self, page_size: int) -> None:
        state = read_mirror(self.store, self.cid)
        self._check_history(state)
        assert (state.health, state.lock_owner) == ("ok", None)
        assert state.cursor == f"{self.cal.epoch}:{self.cal.seq}"
        # The mirror equals the calendar: every live item, and nothing else live.
        live_mirror = {k: state.view(k) for k in state.rows if state.view(k) != ("cancelled",)}
        live_cal = {k: target_view(self.cal, k) for k in self._live_keys()}
        assert live_mirror == live_cal
        # Every item the calendar shows, cancelled ones included, has its row.
        assert set(self.cal.items) <= set(state.rows) <= self.ever_put
        # A re-sync, by delta and by complete listing, does nothing and writes nothing.
        provider = MemoryProvider(self.cal, page_size)
        for source in (provider, CompleteListing(provider)):
            again = sync_connection(self.store, self.cid, source)
            assert again.changes == 0, again
            after = read_mirror(self.store, self.cid)
            assert (after.rows, after.history, after.outbox) == (state.rows, state.history, state.outbox)

    def _check_refusal(self, before: MirrorState) -> None:
        # Only a complete listing without a single live item, over a mirror with live rows, is refused.
        assert not self._live_keys()
        assert any(v != ("cancelled",) for v in map(before.view, before.rows))
        state = read_mirror(self.store, self.cid)
        self._check_history(state)
        assert (state.health, state.lock_owner) == ("error", None)
        # A complete listing that began over several pages drops the old cursor; the refused
        # last page commits none.
        assert state.cursor in (before.cursor, None)
        # Earlier pages of the listing may have applied explicit cancellations; nothing else moved.
        for key in set(before.rows) | set(state.rows):
            if state.view(key) != before.view(key):
                assert self.cal.items[key].status is Status.CANCELLED
                assert state.view(key) == ("cancelled",)

    def _check_crashed(self, before: MirrorState) -> None:
        state = read_mirror(self.store, self.cid)
        self._check_history(state)
        assert state.lock_owner is None, "a crashed sync kept its lease"
        # Each occurrence is either as it was or as the calendar has it: nothing half-applied.
        for key in set(before.rows) | set(state.rows):
            assert state.view(key) in (before.view(key), target_view(self.cal, key)), key

    def _check_history(self, state: MirrorState) -> None:
        """History is complete and consistent, and the outbox has one event per emitting row."""
        by_occurrence: dict[int, list[tuple[Any, ...]]] = {}
        for entry in state.history:
            by_occurrence.setdefault(entry[0], []).append(entry)
        emitting: Counter[tuple[int, str]] = Counter()
        for key, (occurrence_id, status, start, end, _title) in state.rows.items():
            entries = by_occurrence.pop(occurrence_id, [])
            kinds = [e[1] for e in entries]
            assert kinds, f"{key} has no history"
            assert kinds[0] in ("created", "cancelled") and entries[0][2:4] == (None, None), (key, kinds)
            assert kinds.count("created") == (1 if kinds[0] == "created" else 0), (key, kinds)
            live = kinds[0] == "created"
            for kind in kinds[1:]:
                allowed = {"updated", "rescheduled", "cancelled"} if live else {"restored"}
                assert kind in allowed, (key, kinds)
                live = kind != "cancelled"
            assert live == (status != Status.CANCELLED), (key, kinds, status)
            # The last entry ends where the row is (a cancellation keeps the last known slot).
            assert entries[-1][4:] == (start, end), (key, entries[-1], start, end)
            for i, entry in enumerate(entries):
                if i or kinds[0] == "created":  # a first sighting already cancelled emits nothing
                    emitting[(occurrence_id, f"occurrence.{entry[1]}")] += 1
        assert not by_occurrence, "history rows of unknown occurrences"
        assert Counter(e[:2] for e in state.outbox) == emitting
        assert len({e[2] for e in state.outbox}) == len(state.outbox), "duplicate outbox event ids"


def _settings(scale: float) -> settings:
    # Sized from the loaded profile ("ci": 60 examples, "dev": 25): in "ci", scale 1.5 takes ~15 s
    # on SQLite; PostgreSQL commits every page to a server, so it runs a quarter of the examples.
    return settings(
        settings.default,
        max_examples=max(5, int(settings.default.max_examples * scale)),
        stateful_step_count=50,
        deadline=None,
    )


def test_engine_state_machine_sqlite(sqlite_template: Path, tmp_path: Path) -> None:
    numbers = count()

    def open_store() -> tuple[Store, Callable[[], None]]:
        # A fresh database per example: a copy of the migrated template.
        path = tmp_path / f"example-{next(numbers)}.db"
        shutil.copy(sqlite_template, path)
        store = Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring())

        def cleanup() -> None:
            store.close()
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)

        return store, cleanup

    run_state_machine_as_test(lambda: SyncMachine(open_store), settings=_settings(1.5))


@pytest.mark.postgres
def test_engine_state_machine_postgres(postgres_url: str) -> None:
    from tests.conftest import _truncate_all

    store = Store(make_engine(postgres_url), keyring=test_keyring())

    def open_store() -> tuple[Store, Callable[[], None]]:
        _truncate_all(store)  # a fresh schema state per example
        return store, lambda: None

    try:
        run_state_machine_as_test(lambda: SyncMachine(open_store), settings=_settings(0.25))
    finally:
        store.close()
