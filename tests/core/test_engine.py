"""The sync engine against a real store (SQLite and PostgreSQL): what it writes, and when."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from core.mirror import add_connection, ensure_therapist, read_content
from core.store import Connection, Occurrence, OccurrenceHistory, OutboxEvent, Store
from core.sync import (
    ChangePage,
    CursorExpired,
    EmptySourceRefused,
    MirroredKeys,
    OccurrenceKey,
    RemoteOccurrence,
    SourceError,
    Status,
    SyncInProgress,
    SyncReport,
    recurrence_id_for,
    sync_connection,
)
from integrations.base import MemoryCalendar, MemoryProvider

BASE = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


def occ(uid: str, hour: int = 0, *, minutes: int = 50, rid: str = "", **fields: Any) -> RemoteOccurrence:
    start = BASE + timedelta(hours=hour)
    return RemoteOccurrence(key=OccurrenceKey(uid, rid), start=start, end=start + timedelta(minutes=minutes), **fields)


def key(uid: str, rid: str = "") -> OccurrenceKey:
    return OccurrenceKey(uid, rid)


# --- observing the store -----------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    status: str
    start: datetime
    end: datetime
    title: str
    description: str
    location: str
    provider_id: str | None
    video_url: str | None
    updated_at: datetime


@dataclass(frozen=True)
class Snapshot:
    rows: dict[OccurrenceKey, Row]
    history: list[tuple[int, str, datetime | None, datetime | None, datetime | None, datetime | None]]
    outbox: list[tuple[int | None, str, dict[str, Any], str, int, int]]
    cursor: str | None
    health: str
    last_error: str | None
    lock_owner: str | None

    def live(self) -> set[OccurrenceKey]:
        return {k for k, r in self.rows.items() if r.status != Status.CANCELLED}

    def kinds(self, k: OccurrenceKey) -> list[str]:
        return [h[1] for h in self.history if h[0] == self.rows[k].id]


def snapshot(store: Store, connection_id: int) -> Snapshot:
    with store.session() as s:
        rows = {}
        for o in s.scalars(select(Occurrence).where(Occurrence.connection_id == connection_id)):
            content = read_content(store, s, o)  # mirrored content is encrypted at rest
            rows[OccurrenceKey(o.ical_uid, o.recurrence_id)] = Row(
                o.id,
                o.status,
                o.start_utc,
                o.end_utc,
                content.title,
                content.description,
                content.location,
                o.provider_id,
                content.video_url,
                o.updated_at,
            )
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
            (e.occurrence_id, e.kind, e.payload, e.event_id, e.therapist_id, e.connection_id)
            for e in s.scalars(
                select(OutboxEvent).where(OutboxEvent.connection_id == connection_id).order_by(OutboxEvent.id)
            )
        ]
        c = s.get_one(Connection, connection_id)
        return Snapshot(rows, history, outbox, c.cursor, c.health, c.last_error, c.lock_owner)


# --- sources -----------------------------------------------------------------------------------

Step = ChangePage | Exception | Callable[[], None]


class ScriptedSource:
    """Plays one scripted listing per call and records the cursor each call was given.

    A listing is a sequence of pages, exceptions (raised at that point of the iteration) and
    callables (run at that point, between the engine's page transactions).
    """

    def __init__(self, *listings: Sequence[Step]) -> None:
        self.listings = list(listings)
        self.cursors: list[str | None] = []

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        self.cursors.append(cursor)
        for step in self.listings.pop(0):
            if isinstance(step, ChangePage):
                yield step
            elif isinstance(step, Exception):
                raise step
            else:
                step()


def page(
    *upserts: RemoteOccurrence,
    removals: Sequence[OccurrenceKey] = (),
    is_last: bool = True,
    cursor: str | None = None,
    complete: bool = False,
    window: tuple[datetime, datetime] | None = None,
) -> ChangePage:
    return ChangePage(
        upserts=upserts,
        removals=tuple(removals),
        is_last=is_last,
        next_cursor=cursor,
        complete=complete,
        window=window,
    )


# --- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def therapist_id(store: Store) -> int:
    return ensure_therapist(store, "dr.berger@example.org")


@pytest.fixture
def cid(store: Store, therapist_id: int) -> int:
    return add_connection(store, therapist_id, "memory", "Practice", {"calendar": "practice"})


@pytest.fixture
def cal() -> MemoryCalendar:
    return MemoryCalendar()


@pytest.fixture
def run(store: Store, cid: int, cal: MemoryCalendar) -> Callable[..., SyncReport]:
    """Sync the connection from ``cal`` (or from ``source=``)."""

    def _run(source: Any = None, *, page_size: int = 50, **kwargs: Any) -> SyncReport:
        return sync_connection(store, cid, source or MemoryProvider(cal, page_size), **kwargs)

    return _run


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def moved(o: RemoteOccurrence, hours: int) -> RemoteOccurrence:
    return replace(o, start=o.start + timedelta(hours=hours), end=o.end + timedelta(hours=hours))


# --- one history row and one outbox event per change, in the page's transaction ----------------

LIFECYCLE: list[tuple[str, Callable[[MemoryCalendar], None], str, dict[str, int]]] = [
    ("create", lambda c: c.put(occ("a", title="Session")), "created", {"created": 1}),
    ("move", lambda c: c.put(moved(c.items[key("a")], 24)), "rescheduled", {"rescheduled": 1}),
    ("retitle", lambda c: c.put(replace(c.items[key("a")], title="Session 2")), "updated", {"updated": 1}),
    ("tentative", lambda c: c.put(replace(c.items[key("a")], status=Status.TENTATIVE)), "updated", {"updated": 1}),
    ("new link", lambda c: c.put(replace(c.items[key("a")], conference_url="https://meet.google.com/abc-defg-hij")),
     "updated", {"updated": 1}),
    ("delete", lambda c: c.delete(key("a")), "cancelled", {"cancelled": 1}),
    ("undo delete", lambda c: c.put(occ("a", 24, title="Session 2")), "restored", {"restored": 1}),
    ("cancel", lambda c: c.put(replace(c.items[key("a")], status=Status.CANCELLED)), "cancelled", {"cancelled": 1}),
    ("restore moved", lambda c: c.put(occ("a", 48, title="Session 2")), "restored", {"restored": 1}),
]  # fmt: skip


def test_each_change_writes_one_history_row_and_one_outbox_event(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    for step, (name, edit, kind, counts) in enumerate(LIFECYCLE):
        before = snapshot(store, cid)
        edit(cal)
        report = run()
        after = snapshot(store, cid)
        new_history, new_outbox = after.history[len(before.history) :], after.outbox[len(before.outbox) :]
        row = after.rows[key("a")]
        assert [h[:2] for h in new_history] == [(row.id, kind)], name
        assert [e[:2] for e in new_outbox] == [(row.id, f"occurrence.{kind}")], name
        assert report.changes == 1 and {k: getattr(report, k) for k in counts} == counts, name
        # History and payload both tell where the occurrence was and where it is now.
        old = before.rows.get(key("a"))
        expected_old = (old.start, old.end) if old else (None, None)
        assert new_history[0][2:] == (*expected_old, row.start, row.end), name
        assert new_outbox[0][2] == {
            "old_start": _iso(expected_old[0]),
            "old_end": _iso(expected_old[1]),
            "start": _iso(row.start),
            "end": _iso(row.end),
        }, name
        assert len(after.rows) == 1, f"step {step} ({name}) created a second row"

    final = snapshot(store, cid)
    assert final.kinds(key("a")) == [k for _, _, k, _ in LIFECYCLE]
    a = final.rows[key("a")]
    assert (a.status, a.start, a.title) == ("confirmed", BASE + timedelta(hours=48), "Session 2")


def test_a_cancellation_keeps_the_last_known_times_and_content(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a", 3, title="Session", location="Room 4"))
    run()
    cal.delete(key("a"))
    run()
    row = snapshot(store, cid).rows[key("a")]
    assert (row.status, row.start, row.title, row.location) == (
        "cancelled",
        BASE + timedelta(hours=3),
        "Session",
        "Room 4",
    )


def test_change_history_and_event_become_visible_together(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a"))
    run()
    cal.put(moved(cal.items[key("a")], 1))
    seen: dict[str, tuple[datetime, int, int]] = {}

    def observe(name: str) -> None:
        # Another connection's view, as the web process or the outbox relay would see it.
        snap = snapshot(store, cid)
        seen[name] = (snap.rows[key("a")].start, len(snap.history), len(snap.outbox))

    run(checkpoint=observe)
    assert seen["before_commit"] == (BASE, 1, 1)
    assert seen["after_commit"] == (BASE + timedelta(hours=1), 2, 2)


@pytest.mark.parametrize("stage", ["before_commit", "after_commit"])
def test_a_crash_around_the_commit_keeps_change_history_and_event_together(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport], stage: str
) -> None:
    cal.put(occ("a"))
    cal.put(occ("b", 2))
    run()
    cal.put(moved(cal.items[key("a")], 1))
    cal.delete(key("b"))
    before = snapshot(store, cid)

    def crash(name: str) -> None:
        if name == stage:
            raise RuntimeError("power cut")

    with pytest.raises(RuntimeError, match="power cut"):
        run(checkpoint=crash)
    after = snapshot(store, cid)
    if stage == "before_commit":
        assert (after.rows, after.history, after.outbox, after.cursor) == (
            before.rows,
            before.history,
            before.outbox,
            before.cursor,
        )
    else:
        assert after.kinds(key("a"))[-1] == "rescheduled" and after.kinds(key("b"))[-1] == "cancelled"
        assert len(after.outbox) == len(before.outbox) + 2
        assert after.cursor != before.cursor
    assert after.lock_owner is None
    # Either way the next run converges and adds nothing twice.
    run()
    final = snapshot(store, cid)
    assert final.live() == {key("a")} and final.rows[key("a")].start == BASE + timedelta(hours=1)
    assert len(final.history) == len(before.history) + 2 and len(final.outbox) == len(before.outbox) + 2


def test_outbox_payloads_name_nobody(
    store: Store, cid: int, cal: MemoryCalendar, therapist_id: int, run: Callable[..., SyncReport]
) -> None:
    secrets = ["Anna Karenina", "panic disorder", "Berggasse 19", "anna.k@example.org", "intake"]
    a = occ(
        "a",
        title="Anna Karenina intake",
        description="panic disorder follow-up",
        location="Berggasse 19",
        attendees=("anna.k@example.org",),
        conference_url="https://meet.google.com/abc-defg-hij",
    )
    cal.put(a)
    cal.put(occ("s", rid=recurrence_id_for(BASE), title="Anna Karenina", status=Status.CANCELLED))
    run()
    for edit in (
        lambda: cal.put(moved(a, 2)),
        lambda: cal.put(replace(moved(a, 2), title="Anna Karenina (2nd)")),
        lambda: cal.delete(a.key),
        lambda: cal.put(a),
    ):
        edit()
        run()
    events = snapshot(store, cid).outbox
    assert [e[1] for e in events] == [
        "occurrence.created",
        "occurrence.rescheduled",
        "occurrence.updated",
        "occurrence.cancelled",
        "occurrence.restored",
    ]
    for occurrence_id, _kind, payload, _event_id, event_therapist, event_connection in events:
        text = json.dumps(payload).lower()
        assert not [s for s in secrets if s.lower() in text]
        assert set(payload) == {"old_start", "old_end", "start", "end"}
        assert occurrence_id is not None and (event_therapist, event_connection) == (therapist_id, cid)
    assert len({e[3] for e in events}) == len(events)


def test_the_video_link_is_detected_into_the_mirror(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a", description="Join: https://us02web.zoom.us/j/85012345678?pwd=x."))
    cal.put(occ("b", conference_url="https://meet.google.com/abc-defg-hij", location="https://zoom.us/j/1"))
    cal.put(occ("c", location="Room 4"))
    run()
    rows = snapshot(store, cid).rows
    assert rows[key("a")].video_url == "https://us02web.zoom.us/j/85012345678?pwd=x"
    assert rows[key("b")].video_url == "https://meet.google.com/abc-defg-hij"
    assert rows[key("c")].video_url is None


# --- a source that names removals by its own ids --------------------------------------------------


class _ConsultingProvider(MemoryProvider):
    """A memory source that keeps what the engine hands a source consulting the mirror."""

    mirrored: MirroredKeys | None = None

    def consult_mirror(self, mirrored: MirroredKeys) -> None:
        self.mirrored = mirrored


def test_the_engine_tells_a_source_which_occurrence_a_provider_id_was(
    store: Store, therapist_id: int, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    # Graph's deletions name only an id: the Outlook provider asks the mirror what it was.
    other = add_connection(store, therapist_id, "memory", "Other", {"calendar": "other"})
    elsewhere = MemoryCalendar()
    elsewhere.put(occ("x", provider_id="p-x"))
    sync_connection(store, other, MemoryProvider(elsewhere))
    cal.put(occ("old", provider_id="p-1"))
    cal.put(occ("kept", 1, provider_id="p-2"))
    cal.put(occ("dropped", 2, provider_id="p-2"))
    run()
    cal.delete(key("old"))
    cal.delete(key("dropped"))
    cal.put(occ("new", 3, provider_id="p-1"))  # the id came back on another occurrence
    source = _ConsultingProvider(cal)
    run(source)

    assert source.mirrored is not None
    # A live occurrence is named before a cancelled one under the same id, whichever came first;
    # ids of other connections, and unknown ones, are not named.
    assert source.mirrored(["p-1", "p-2", "p-x", "p-unknown"]) == {"p-1": key("new"), "p-2": key("kept")}
    cal.delete(key("new"))
    run()
    assert source.mirrored(["p-1"]) in ({"p-1": key("old")}, {"p-1": key("new")})  # only cancelled ones now


# --- changed means the content changed ---------------------------------------------------------


def test_a_spurious_change_does_no_work(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    a = occ("a", title="Session", description="Line 1\nLine 2", attendees=("Anna@Example.org", "dr@example.org"))
    b = occ("b", 2, provider_id="g-1")
    cal.put(a)
    cal.put(b)
    run()
    before = snapshot(store, cid)
    # The provider bumps etags / sequence numbers, re-serialises text and reorders attendees,
    # and moves an item to a new provider id: none of it is a change of the occurrence.
    cal.put(a)
    cal.put(
        replace(
            a, description="Line 1  \r\nLine 2\r\n", title=" Session", attendees=("dr@example.org", "anna@example.org")
        )
    )
    cal.put(replace(b, provider_id="g-2"))
    report = run()
    after = snapshot(store, cid)
    assert report.changes == 0 and report.unchanged == 2
    assert (after.history, after.outbox) == (before.history, before.outbox)
    assert after.rows[key("a")] == before.rows[key("a")]
    assert after.rows[key("b")].provider_id == "g-2"
    assert after.rows[key("b")].updated_at == before.rows[key("b")].updated_at


def test_one_page_mixing_id_only_changes_updates_and_cancellations(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    for uid, hour in (("a", 0), ("b", 1), ("c", 2), ("d", 3)):
        cal.put(occ(uid, hour, provider_id=f"p-{uid}"))
    run()
    cal.put(replace(cal.items[key("a")], provider_id="p-a2"))
    cal.put(replace(cal.items[key("b")], title="renamed"))
    cal.put(moved(cal.items[key("c")], 5))
    cal.delete(key("d"))
    report = run()
    rows = snapshot(store, cid).rows
    assert (report.unchanged, report.updated, report.rescheduled, report.cancelled) == (1, 1, 1, 1)
    assert rows[key("a")].provider_id == "p-a2" and rows[key("b")].title == "renamed"
    assert rows[key("c")].start == BASE + timedelta(hours=7) and rows[key("d")].status == "cancelled"


# --- idempotent pages --------------------------------------------------------------------------


def test_replaying_the_same_page_is_idempotent(store: Store, cid: int, run: Callable[..., SyncReport]) -> None:
    delta = page(occ("a", title="A"), moved(occ("b"), 3), removals=[key("c")], cursor="c2")
    source = ScriptedSource(
        [page(occ("a"), occ("b"), occ("c", 5), complete=True, cursor="c1")],
        [delta],
        [delta],  # the source hands out the same page again (retry, lost ack...)
    )
    run(source)
    first = run(source)
    before = snapshot(store, cid)
    second = run(source)
    after = snapshot(store, cid)
    assert (first.updated, first.rescheduled, first.cancelled) == (1, 1, 1)
    assert second.changes == 0 and second.unchanged == 3
    assert (after.rows, after.history, after.outbox) == (before.rows, before.history, before.outbox)
    assert source.cursors == [None, "c1", "c2"]


def test_an_item_repeated_across_pages_of_one_listing_is_applied_once(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    a, b = occ("a"), occ("b", 1)
    source = ScriptedSource(
        [page(a, b, is_last=False, complete=True), page(a, b, complete=True, cursor="c1")],
    )
    report = run(source)
    snap = snapshot(store, cid)
    assert (report.created, report.unchanged, report.pages) == (2, 2, 2)
    assert len(snap.history) == 2 and len(snap.outbox) == 2 and snap.live() == {a.key, b.key}


def test_duplicated_keys_inside_one_page(store: Store, cid: int, run: Callable[..., SyncReport]) -> None:
    # Providers do send the same UID twice in one page (an override and its replay); the last
    # word wins and the unique (connection, uid, recurrence id) constraint is never violated.
    source = ScriptedSource(
        [
            page(
                occ("a", title="first"),
                occ("a", 1, title="second"),
                occ("b"),
                removals=[key("b"), key("b")],
                cursor="c1",
            )
        ],
        [page(occ("b", title="again"), occ("b", title="again"), removals=[key("b")], cursor="c2")],
    )
    report = run(source)
    snap = snapshot(store, cid)
    assert report.created == 2
    assert set(snap.rows) == {key("a"), key("b")}
    assert (snap.rows[key("a")].title, snap.rows[key("a")].start) == ("second", BASE + timedelta(hours=1))
    assert snap.live() == {key("a"), key("b")}
    report = run(source)
    snap = snapshot(store, cid)
    assert report.updated == 1 and snap.rows[key("b")].title == "again" and len(snap.rows) == 2


def test_a_removal_of_something_never_mirrored_is_ignored(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    report = run(ScriptedSource([page(removals=[key("ghost")], cursor="c1")]))
    snap = snapshot(store, cid)
    assert report.changes == 0 and snap.rows == {} and snap.cursor == "c1"


# --- cancelled instances -----------------------------------------------------------------------


def test_a_cancelled_instance_seen_first_is_stored_cancelled_without_an_event(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    series = [occ("weekly", 24 * 7 * i, rid=recurrence_id_for(BASE + timedelta(weeks=i))) for i in range(3)]
    for instance in series:
        cal.put(instance)
    cal.put(replace(series[1], status=Status.CANCELLED))
    report = run()
    snap = snapshot(store, cid)
    assert report.created == 2
    assert snap.rows[series[1].key].status == "cancelled"
    assert snap.kinds(series[1].key) == ["cancelled"]
    assert {e[0] for e in snap.outbox} == {snap.rows[series[0].key].id, snap.rows[series[2].key].id}
    # A later full listing leaves it alone; un-cancelling it restores it with one event.
    cal.expire_cursors()
    assert run().changes == 0
    cal.put(series[1])
    run()
    snap = snapshot(store, cid)
    assert snap.kinds(series[1].key) == ["cancelled", "restored"]
    assert snap.outbox[-1][:2] == (snap.rows[series[1].key].id, "occurrence.restored")


# --- complete listings: mark-and-sweep inside the window ----------------------------------------


def test_a_complete_listing_sweeps_only_inside_its_window(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    w0, w1 = BASE, BASE + timedelta(days=30)
    listed = occ("listed", 24)
    at_start = occ("at-start", 0)  # window[0] is inclusive
    inside = occ("inside", 48)
    before = occ("before", -48)
    after = occ("after", 24 * 40)
    at_end = occ("at-end", 24 * 30)  # window[1] is exclusive
    everything = (listed, at_start, inside, before, after, at_end)
    source = ScriptedSource(
        [page(*everything, complete=True, cursor="c1")],
        [page(listed, complete=True, window=(w0, w1), cursor="c2")],
    )
    run(source)
    report = run(source)
    snap = snapshot(store, cid)
    assert report.cancelled == 2
    assert snap.live() == {listed.key, before.key, after.key, at_end.key}
    assert snap.rows[at_start.key].status == snap.rows[inside.key].status == "cancelled"


def test_a_complete_listing_over_several_pages_sweeps_once_at_the_end(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    for i in range(7):
        cal.put(occ(f"e{i}", i))
    run()
    cal.delete(key("e3"))
    cal.put(occ("new", 20))
    cal.expire_cursors()
    report = run(page_size=2)
    snap = snapshot(store, cid)
    assert report.full_resync and report.pages == 4
    assert (report.created, report.cancelled, report.unchanged) == (1, 1, 6)
    assert snap.live() == {key(f"e{i}") for i in range(7) if i != 3} | {key("new")}


def test_a_page_complete_for_some_uids_sweeps_only_those_inside_its_window(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    w0, w1 = BASE, BASE + timedelta(days=30)
    weekly = [occ("series", 24 * 7 * n, rid=f"r{n}") for n in range(6)]  # the last one is outside the window
    other = occ("other", 2)
    source = ScriptedSource(
        [page(*weekly, other, cursor="c1")],
        # The series moved: its remaining instances are the first two and a new one; other UIDs
        # and the series' instance beyond the window are not the page's business.
        [
            ChangePage(
                upserts=(weekly[0], weekly[1], occ("series", 5, rid="r-new")),
                is_last=True,
                next_cursor="c2",
                window=(w0, w1),
                complete_uids=("series",),
            )
        ],
        # Complete for a UID with nothing listed: everything it had in the window goes.
        [ChangePage(is_last=True, next_cursor="c3", window=(w0, w1), complete_uids=("series",))],
    )
    run(source)
    report = run(source)
    snap = snapshot(store, cid)
    assert (report.created, report.cancelled, report.unchanged) == (1, 3, 2)
    assert snap.live() == {weekly[0].key, weekly[1].key, weekly[5].key, key("series", "r-new"), other.key}
    again = run(source)
    assert again.cancelled == 3 and snapshot(store, cid).live() == {weekly[5].key, other.key}


# --- the empty-source guard --------------------------------------------------------------------


def test_a_source_that_suddenly_lists_nothing_is_refused(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a"))
    cal.put(occ("b", 1))
    run()
    cal.delete(key("a"))
    cal.delete(key("b"))
    cal.expire_cursors()  # so the next listing is a complete one (e.g. a broken ICS export)
    before = snapshot(store, cid)
    with pytest.raises(EmptySourceRefused):
        run()
    after = snapshot(store, cid)
    assert (after.rows, after.history, after.outbox, after.cursor) == (
        before.rows,
        before.history,
        before.outbox,
        before.cursor,
    )
    assert after.health == "error" and "refusing" in (after.last_error or "")
    assert after.lock_owner is None

    report = run(force_empty=True)
    snap = snapshot(store, cid)
    assert report.full_resync and report.cancelled == 2
    assert snap.live() == set() and snap.health == "ok" and snap.cursor != before.cursor
    assert [e[1] for e in snap.outbox[-2:]] == ["occurrence.cancelled"] * 2


def test_an_empty_first_listing_is_fine(store: Store, cid: int, run: Callable[..., SyncReport]) -> None:
    report = run()
    assert report.changes == 0 and snapshot(store, cid).health == "ok"


def test_the_guard_counts_only_live_items(store: Store, cid: int, run: Callable[..., SyncReport]) -> None:
    source = ScriptedSource(
        [page(occ("a"), complete=True, cursor="c1")],
        [page(replace(occ("b"), status=Status.CANCELLED), complete=True, cursor="c2")],
    )
    run(source)
    with pytest.raises(EmptySourceRefused):
        run(source)
    assert snapshot(store, cid).live() == {key("a")}


# --- cursors -----------------------------------------------------------------------------------


def test_an_expired_cursor_mid_listing_falls_back_once_to_a_full_listing(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    a, b, c = occ("a"), occ("b", 1), occ("c", 2)
    source = ScriptedSource(
        [page(a, b, complete=True, cursor="c1")],
        [page(moved(b, 5), is_last=False), CursorExpired("410 Gone")],
        [page(moved(b, 5), c, complete=True, cursor="c2")],
    )
    run(source)
    report = run(source)
    snap = snapshot(store, cid)
    assert source.cursors == [None, "c1", None]
    assert report.full_resync
    assert snap.cursor == "c2"
    assert snap.live() == {b.key, c.key} and snap.rows[a.key].status == "cancelled"
    # The reschedule committed before the cursor expired is not recorded a second time.
    assert snap.kinds(b.key) == ["created", "rescheduled"]


def test_an_expired_cursor_before_the_first_page_falls_back(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a"))
    assert not run().full_resync
    cal.put(occ("b", 1))
    cal.expire_cursors()
    report = run()
    assert report.full_resync and report.created == 1 and report.unchanged == 1
    assert snapshot(store, cid).cursor == f"{cal.epoch}:{cal.seq}"


def test_a_full_listing_rejected_as_expired_is_a_source_error(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    source = ScriptedSource([CursorExpired("410 Gone")])
    with pytest.raises(SourceError):
        run(source)
    snap = snapshot(store, cid)
    assert snap.health == "error" and snap.cursor is None


def test_an_expired_cursor_during_the_fallback_listing_is_a_source_error(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    source = ScriptedSource(
        [page(occ("a"), complete=True, cursor="c1")],
        [CursorExpired("410 Gone")],
        [page(occ("a"), is_last=False, complete=True), CursorExpired("410 Gone again")],
    )
    run(source)
    with pytest.raises(SourceError):
        run(source)
    snap = snapshot(store, cid)
    assert (snap.health, snap.lock_owner) == ("error", None)
    # The expired cursor, or none once the complete listing began: never one it did not finish.
    assert snap.cursor in ("c1", None)


# --- source failures ---------------------------------------------------------------------------


def test_a_failing_source_marks_the_connection_and_keeps_the_cursor(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a"))
    run()
    cursor = snapshot(store, cid).cursor
    for i in range(3):
        cal.put(occ(f"b{i}", i + 1))
    cal.fail_after_pages = 1
    with pytest.raises(SourceError, match="injected failure"):
        run(page_size=1)
    snap = snapshot(store, cid)
    assert snap.cursor == cursor
    assert (snap.health, snap.last_error) == ("error", "injected failure in the memory calendar")
    assert snap.live() == {key("a"), key("b0")}  # the page before the failure stays applied
    assert snap.lock_owner is None

    report = run(page_size=1)
    snap = snapshot(store, cid)
    assert report.created == 2 and report.unchanged == 1
    assert (snap.health, snap.last_error) == ("ok", None)
    assert len(snap.live()) == 4 and len(snap.outbox) == 4


def test_a_round_its_source_cannot_resume_leaves_a_complete_listing_after_a_failure(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    """Graph's case: a round of changes that failed after storing a page. Its old cursor would never
    name the removal of what that page showed, so the next sync lists everything and sweeps it."""
    a, b = occ("a"), occ("b", 1)
    source = ScriptedSource(
        [page(a, complete=True, cursor="c1")],
        [replace(page(b, is_last=False), resumable=False), SourceError("429 through 3 attempts")],
        [page(a, complete=True, cursor="c2")],  # b came and went meanwhile
    )
    run(source)
    with pytest.raises(SourceError):
        run(source)
    assert snapshot(store, cid).cursor is None and key("b") in snapshot(store, cid).live()
    report = run(source)
    snap = snapshot(store, cid)
    assert source.cursors == [None, "c1", None]
    assert report.cancelled == 1 and snap.live() == {a.key} and snap.cursor == "c2"


def test_a_listing_without_a_last_page_commits_no_cursor(
    store: Store, cid: int, run: Callable[..., SyncReport]
) -> None:
    source = ScriptedSource(
        [page(occ("a"), complete=True, cursor="c1")],
        [page(occ("b", 1), is_last=False, cursor="c-never")],
    )
    run(source)
    with pytest.raises(SourceError, match="before its last page"):
        run(source)
    snap = snapshot(store, cid)
    assert (snap.cursor, snap.health, snap.lock_owner) == ("c1", "error", None)


def test_pages_after_the_last_page_are_refused(store: Store, cid: int, run: Callable[..., SyncReport]) -> None:
    source = ScriptedSource([page(occ("a"), cursor="c1"), page(occ("b", 1), cursor="c2")])
    with pytest.raises(SourceError, match="after its last page"):
        run(source)
    snap = snapshot(store, cid)
    assert key("b") not in snap.rows and snap.health == "error"


# --- one sync per connection -------------------------------------------------------------------


def test_a_second_sync_of_the_same_connection_is_refused(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("b", 1))
    outcomes: list[object] = []

    def sync_again() -> None:
        try:
            outcomes.append(sync_connection(store, cid, MemoryProvider(cal)))
        except SyncInProgress as exc:
            outcomes.append(exc)

    source = ScriptedSource(
        [page(occ("a"), is_last=False, complete=True), sync_again, page(cursor="c1", complete=True)]
    )
    report = run(source)
    assert len(outcomes) == 1 and isinstance(outcomes[0], SyncInProgress)
    # The refused attempt neither released the running sync's lease nor touched its results.
    snap = snapshot(store, cid)
    assert report.created == 1 and snap.live() == {key("a")} and snap.cursor == "c1"
    assert (snap.health, snap.lock_owner) == ("ok", None)
    assert run().created == 1  # the lease is free again


def test_an_unknown_connection(store: Store, cid: int, cal: MemoryCalendar) -> None:
    with pytest.raises(LookupError):
        sync_connection(store, cid + 1000, MemoryProvider(cal))


def _fail_in_checkpoint(name: str) -> None:
    raise RuntimeError("crash at " + name)


FAILURES: dict[str, tuple[Callable[[MemoryCalendar], Any], dict[str, Any], type[Exception]]] = {
    "source error": (lambda c: setattr(c, "fail_after_pages", 0), {}, SourceError),
    "crash before commit": (lambda c: None, {"checkpoint": _fail_in_checkpoint}, RuntimeError),
    "progress callback fails": (
        lambda c: None,
        {"progress": lambda done, total: _fail_in_checkpoint("progress")},
        RuntimeError,
    ),
    "empty source": (
        lambda c: (c.delete(key("a")), c.delete(key("b")), c.expire_cursors()),
        {},
        EmptySourceRefused,
    ),
}


@pytest.mark.parametrize("failure", FAILURES.values(), ids=FAILURES.keys())
def test_the_lease_is_released_after_a_failure(
    store: Store,
    cid: int,
    cal: MemoryCalendar,
    run: Callable[..., SyncReport],
    failure: tuple[Callable[[MemoryCalendar], Any], dict[str, Any], type[Exception]],
) -> None:
    arrange, kwargs, error = failure
    cal.put(occ("a"))
    run()
    cal.put(occ("b", 1))
    arrange(cal)
    with pytest.raises(error):
        run(**kwargs)
    assert snapshot(store, cid).lock_owner is None
    run(force_empty=True)  # not SyncInProgress


def test_an_expired_lease_can_be_taken_over(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    # A process that died mid-sync leaves its lease behind; it expires after LEASE_TTL.
    with store.session() as s:
        s.execute(
            update(Connection)
            .where(Connection.id == cid)
            .values(lock_owner="dead-worker", lock_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    cal.put(occ("a"))
    assert run().created == 1
    with store.session() as s:
        s.execute(
            update(Connection)
            .where(Connection.id == cid)
            .values(lock_owner="live-worker", lock_expires_at=datetime.now(UTC) + timedelta(minutes=5))
        )
    with pytest.raises(SyncInProgress):
        run()


@pytest.mark.parametrize("listing", ["pages", "nothing new"])
def test_a_sync_that_lost_its_lease_stops_before_writing(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport], listing: str
) -> None:
    a = occ("a")
    cal.put(a)
    run()
    stale_cursor = snapshot(store, cid).cursor

    def stall_then_someone_else_syncs() -> None:
        # The laptop slept past LEASE_TTL; the worker took the connection over and synced a
        # reschedule meanwhile.
        with store.session() as s:
            s.execute(
                update(Connection)
                .where(Connection.id == cid)
                .values(lock_expires_at=datetime.now(UTC) - timedelta(seconds=1))
            )
        cal.put(moved(a, 3))
        sync_connection(store, cid, MemoryProvider(cal))

    if listing == "pages":
        # The stalled sync still holds what it listed before the stall: ``a`` at its old time.
        stalled = ScriptedSource([page(a, is_last=False), stall_then_someone_else_syncs, page(a, cursor=stale_cursor)])
    else:
        # Its one page says nothing changed: the outcome alone is written, as one statement of
        # its own (not in a page's transaction), and only while this sync still holds the lease.
        stalled = ScriptedSource([stall_then_someone_else_syncs, page(cursor=stale_cursor)])
    with pytest.raises(SyncInProgress):
        run(stalled)
    snap = snapshot(store, cid)
    assert snap.rows[a.key].start == BASE + timedelta(hours=3)
    assert snap.kinds(a.key) == ["created", "rescheduled"]
    assert snap.cursor == f"{cal.epoch}:{cal.seq}"  # the newer sync's cursor, not the stale one


def test_a_sync_with_nothing_new_records_its_outcome_and_frees_the_connection(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    cal.put(occ("a"))
    run()
    before = snapshot(store, cid)
    report = run(ScriptedSource([page(cursor="after-nothing")]))
    assert (report.created, report.rescheduled, report.cancelled, report.pages) == (0, 0, 0, 1)
    with store.session() as s:
        row = s.get_one(Connection, cid)
        assert (row.cursor, row.lock_owner, row.last_result["pages"]) == ("after-nothing", None, 1)
    assert snapshot(store, cid).rows == before.rows
    run(ScriptedSource([page(cursor="and-again")]))  # the lease was released: the next sync runs


# --- progress ----------------------------------------------------------------------------------


def test_progress_is_reported_per_page(
    store: Store, cid: int, cal: MemoryCalendar, run: Callable[..., SyncReport]
) -> None:
    for i in range(5):
        cal.put(occ(f"e{i}", i))
    calls: list[tuple[int, int | None]] = []
    report = run(page_size=2, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)] and report.pages == 3
