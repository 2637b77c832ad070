"""The sync engine: applies a source's pages of changes to the mirror.

Guarantees (DESIGN.md, "Sync"):
- pages are applied idempotently, each in its own transaction, together with the domain events
  (outbox rows) and history rows describing what changed;
- the new cursor is committed only with the last page it covers (and with it the sync's outcome
  and the release of its lease), so a crash at any point makes the next run redo (idempotently)
  whatever was not committed;
- a complete listing sweeps what it did not show (mark-and-sweep, scoped to the listing's
  window, so occurrences that merely left the window are kept as they were);
- a cursor the source no longer accepts falls back to one complete listing;
- a source that had occurrences and suddenly lists none is refused unless forced;
- one sync per connection at a time (a lease row in ``connections``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import socket
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, case, func, or_, select, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session
from sqlalchemy.pool import SingletonThreadPool

from core.crypto import Owner, OwnerCipher
from core.store.bulk import EncodedJson, insert_tuples
from core.store.db import Store
from core.store.models import Connection, Occurrence, OccurrenceHistory, OutboxEvent
from core.sync.content import hash_key, seal_occurrence
from core.sync.decide import Action, LocalState, RemoteState, decide
from core.sync.hashing import ContentHasher
from core.sync.types import (
    ChangePage,
    ChangeSource,
    ConsultsMirror,
    CursorExpired,
    OccurrenceKey,
    ReauthorizationRequired,
    RemoteOccurrence,
    SourceError,
    Status,
)
from core.video_links import detect_video_url

log = logging.getLogger(__name__)
T = TypeVar("T")

LEASE_TTL = timedelta(minutes=10)

_OCCURRENCES: Table = Occurrence.__table__  # type: ignore[assignment]
_HISTORY: Table = OccurrenceHistory.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]

# Column order of the rows the engine writes (tuples, not dicts: a first mirror writes 30,000).
_OCCURRENCE_COLUMNS = (
    "connection_id",
    "ical_uid",
    "recurrence_id",
    "provider_id",
    "status",
    "all_day",
    "start_utc",
    "end_utc",
    "timezone",
    "content",
    "content_hash",
    "created_at",
    "updated_at",
)
_HISTORY_COLUMNS = ("occurrence_id", "kind", "old_start_utc", "old_end_utc", "new_start_utc", "new_end_utc", "at")
_OUTBOX_COLUMNS = ("event_id", "kind", "therapist_id", "connection_id", "occurrence_id", "payload", "created_at")

# The connection's statements of every sync, built once on its table: a sync with nothing new (most
# of them, one per push) is these, its listing and little else, and building them (and the ORM
# looking for the connection among the session's objects to update it) cost more than running them.
_CONNECTIONS: Table = Connection.__table__  # type: ignore[assignment]
_TAKE_LEASE = (
    update(_CONNECTIONS)
    .where(
        _CONNECTIONS.c.id == bindparam("connection_pk"),
        # A removed connection is never synced again (core.mirror.remove_connection).
        _CONNECTIONS.c.removed_at.is_(None),
        or_(_CONNECTIONS.c.lock_owner.is_(None), _CONNECTIONS.c.lock_expires_at < bindparam("now")),
    )
    .values(lock_owner=bindparam("owner"), lock_expires_at=bindparam("until"))
)
_RENEW_LEASE = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection_pk"), _CONNECTIONS.c.lock_owner == bindparam("owner"))
    .values(lock_expires_at=bindparam("until"))
)
_SET_CURSOR = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection_pk"))
    .values(cursor=bindparam("new_cursor", type_=_CONNECTIONS.c.cursor.type))
)
_NEXT_REVISION = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection_pk"))
    .values(listing_revision=_CONNECTIONS.c.listing_revision + 1)
)
_OURS = _CONNECTIONS.c.lock_owner == bindparam("owner")
# A failed sync's outcome is recorded by the UPDATE that gives up its lease (if still its own).
_RELEASE_WITH = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection_pk"))
    .values(
        lock_owner=case((_OURS, None), else_=_CONNECTIONS.c.lock_owner),
        lock_expires_at=case((_OURS, None), else_=_CONNECTIONS.c.lock_expires_at),
    )
)
# A sync ends in its last page's transaction: the new cursor, the outcome and the lease given up
# are one UPDATE, made only while the lease is still this sync's (so it is also that page's lease
# check). A success ends any failure streak and its backoff (core.sync.backoff).
_CONCLUDE = (
    update(_CONNECTIONS)
    .where(_CONNECTIONS.c.id == bindparam("connection_pk"), _OURS)
    .values(
        cursor=bindparam("new_cursor", type_=_CONNECTIONS.c.cursor.type),
        lock_owner=None,
        lock_expires_at=None,
        last_sync_at=bindparam("now"),
        last_result=bindparam("result", type_=_CONNECTIONS.c.last_result.type),
        health="ok",
        last_error=None,
        last_success_at=bindparam("now"),
        consecutive_failures=0,
        failing_since=None,
        backoff_until=None,
    )
)

# Past it SQLite numbers new rows at random (https://sqlite.org/autoinc.html): then ids are read back.
_SQLITE_LARGEST_ROWID = 2**63 - 1

Progress = Callable[[int, int | None], None]
Checkpoint = Callable[[str], None]


class ConnectionGone(LookupError):
    """The connection does not exist or was removed: there is nothing to sync."""


class SyncInProgress(Exception):
    """Another sync of the same connection holds the lease."""


class EmptySourceRefused(SourceError):
    """A source that had occurrences now lists none; refusing to wipe the mirror."""


@dataclass
class SyncReport:
    connection_id: int
    connection: str
    created: int = 0
    updated: int = 0
    rescheduled: int = 0
    restored: int = 0
    cancelled: int = 0
    unchanged: int = 0
    pages: int = 0
    full_resync: bool = False

    @property
    def changes(self) -> int:
        return self.created + self.updated + self.rescheduled + self.restored + self.cancelled

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class _Row:
    id: int
    status: Status
    start: datetime
    end: datetime
    content_hash: str
    provider_id: str | None

    def local_state(self) -> LocalState:
        return LocalState(self.status, self.start, self.end, self.content_hash)


@dataclass
class _Mirror:
    """The mirror's rows of one connection as far as this run has looked at them."""

    connection_id: int
    rows: dict[OccurrenceKey, _Row] = field(default_factory=dict)
    fully_loaded: bool = False

    def _load(self, session: Session, *conditions: Any) -> None:
        query = select(
            Occurrence.id,
            Occurrence.ical_uid,
            Occurrence.recurrence_id,
            Occurrence.status,
            Occurrence.start_utc,
            Occurrence.end_utc,
            Occurrence.content_hash,
            Occurrence.provider_id,
        ).where(Occurrence.connection_id == self.connection_id, *conditions)
        for r in session.execute(query):
            self.rows[OccurrenceKey(r.ical_uid, r.recurrence_id)] = _Row(
                r.id, Status(r.status), r.start_utc, r.end_utc, r.content_hash, r.provider_id
            )

    def ensure_loaded(self, session: Session, keys: Iterable[OccurrenceKey], *, everything: bool) -> None:
        if self.fully_loaded:
            return
        if everything:
            self._load(session)
            self.fully_loaded = True
            return
        uids = sorted({k.ical_uid for k in keys if k not in self.rows})
        for i in range(0, len(uids), 500):  # stay under bound-parameter limits
            self._load(session, Occurrence.ical_uid.in_(uids[i : i + 500]))


@dataclass(slots=True)
class _Insert:
    """A first sighting: its row (in ``_OCCURRENCE_COLUMNS`` order) and its instants as ISO text."""

    key: OccurrenceKey
    row: tuple[Any, ...]
    action: Action
    status: Status
    start_iso: str
    end_iso: str


@dataclass
class _Listing:
    """One listing's progress across its pages: the mirror as far as loaded, what it has shown."""

    mirror: _Mirror
    seen: set[OccurrenceKey] = field(default_factory=set)
    live_seen: int = 0
    last_seen: bool = False


@dataclass
class _Tail:
    """A page's rows the writer thread inserts before the commit (column orders as named)."""

    history: list[tuple[Any, ...]]  # _HISTORY_COLUMNS
    outbox: list[tuple[Any, ...]]  # _OUTBOX_COLUMNS
    instants: dict[Any, Any]  # the transaction's memo of converted instants (core.store.bulk)
    # New occurrences numbered in advance (SQLite), and the largest id before them.
    occurrences: list[tuple[Any, ...]] = field(default_factory=list)  # _OCCURRENCE_COLUMNS
    after: int = 0


@dataclass
class _PageWrites:
    """Everything one page changes, gathered so it is written in a few bulk statements."""

    inserts: list[_Insert] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[Any, ...]] = field(default_factory=list)  # in _HISTORY_COLUMNS order
    # (kind, occurrence id, payload) of each domain event; ids and created_at added at the flush
    outbox: list[tuple[str, int, EncodedJson]] = field(default_factory=list)


_VARIANTS = "89ab" * 4  # a random hex digit -> the RFC 4122 variant digit keeping its two low bits


def _event_ids(count: int) -> list[str]:
    """``count`` random UUIDs (version 4) as text, written as ``str(uuid.uuid4())`` writes them.

    One read of the system's random source for all of them (a page's events), not one per id.
    """
    h = os.urandom(16 * count).hex()
    return [
        f"{h[at : at + 8]}-{h[at + 8 : at + 12]}-4{h[at + 13 : at + 16]}-"
        f"{_VARIANTS[int(h[at + 16], 16)]}{h[at + 17 : at + 20]}-{h[at + 20 : at + 32]}"
        for at in range(0, 32 * count, 32)
    ]


def _event_id() -> str:
    """One random UUID (version 4) as text, the same as ``str(uuid.uuid4())``."""
    return _event_ids(1)[0]


# What json.dumps (default arguments: ASCII only) writes for one string.
_json_string = json.encoder.encode_basestring_ascii


def _payload(old_start: str | None, old_end: str | None, start: str | None, end: str | None) -> EncodedJson:
    """An occurrence event's payload (instants as UTC ISO text or None) as ``json.dumps`` encodes it.

    Written directly, one per changed occurrence: the encoder call was ~10% of a first mirror's
    cost per row. ``tests/core/test_outbox_payload_text.py`` checks it against ``json.dumps``.
    """
    return EncodedJson(
        f'{{"old_start": {"null" if old_start is None else _json_string(old_start)}, '
        f'"old_end": {"null" if old_end is None else _json_string(old_end)}, '
        f'"start": {"null" if start is None else _json_string(start)}, '
        f'"end": {"null" if end is None else _json_string(end)}}}'
    )


def _created_payload(start: str, end: str) -> EncodedJson:
    """``_payload(None, None, start, end)`` for UTC ISO texts (``datetime.isoformat``: nothing to escape)."""
    return EncodedJson(f'{{"old_start": null, "old_end": null, "start": "{start}", "end": "{end}"}}')


class _Inline(Executor):
    """Runs each task at once in the caller's thread (a store whose connections are bound to theirs)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed over like a thread's: raised by result()
            future.set_exception(exc)
        return future


_INLINE = _Inline()  # stateless: one for every run and thread


def _writer(store: Store) -> Executor:
    # An in-memory SQLite database lives in one connection per thread (SingletonThreadPool): a
    # session opened here could not be finished by another thread.
    if isinstance(store.engine.pool, SingletonThreadPool):
        return _INLINE
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-writer")


class _Run:
    def __init__(
        self,
        store: Store,
        connection: _Leased,
        report: SyncReport,
        *,
        force_empty: bool,
        now: datetime,
        progress: Progress | None,
        checkpoint: Checkpoint | None,
        lease_owner: str,
    ) -> None:
        self.store = store
        self.connection_id = connection.id
        self.therapist_id = connection.therapist_id
        self.report = report
        self.force_empty = force_empty
        self.now = now
        self.progress = progress
        self.checkpoint = checkpoint
        self.lease_owner = lease_owner
        self.cipher: OwnerCipher | None = None
        self.hasher = ContentHasher(b"")
        # UTC ISO text of the instants this run has written (hashes, payloads, SQLite's columns).
        self.iso_texts: dict[datetime, str] = {}

    def _iso_of(self, moment: datetime) -> str:
        text = self.iso_texts.get(moment)
        if text is None:
            # Providers hand over UTC instants (RemoteOccurrence): no conversion to make for those.
            utc = moment if moment.tzinfo is UTC else moment.astimezone(UTC)
            text = self.iso_texts[moment] = utc.isoformat()
        return text

    def _iso_or_none(self, moment: datetime | None) -> str | None:
        return None if moment is None else self._iso_of(moment)

    def _ensure_cipher(self, session: Session) -> OwnerCipher:
        if self.cipher is None:
            self.cipher = self.store.keyring.cipher(session, Owner("therapist", self.therapist_id))
            self.hasher = ContentHasher(hash_key(self.cipher))
        return self.cipher

    def run(self, source: ChangeSource, cursor: str | None) -> None:
        """Apply every page of ``source``'s listing from ``cursor``, one transaction per page.

        A page's transaction is opened, its rows decided and its updates written here; its new
        rows (on SQLite all of them, numbered in advance; on PostgreSQL the history and outbox
        rows) and its commit are finished by a writer thread (``_finish``) while
        this thread takes the next page from the source and, when that needs no reading of the
        mirror (a complete listing is loaded on its first page), decides it in memory. The next
        transaction begins only once the previous one has committed, so pages still commit one
        at a time, in order, each with everything it changed, and the cursor with the last; the
        database work (SQLite's inserts and commit, or PostgreSQL's server) runs meanwhile.
        """
        listing = _Listing(_Mirror(self.connection_id))
        processed = 0
        with _writer(self.store) as writer:
            committing: tuple[Future[None], ChangePage] | None = None
            try:
                for pages_done, page in enumerate(source.list_changes(cursor)):
                    if listing.last_seen:
                        raise SourceError("the source sent pages after its last page")
                    writes = None
                    if committing is not None and listing.mirror.fully_loaded and self.cipher is not None:
                        writes = self._decide(listing, page)  # in memory, while the last page commits
                    if committing is not None:
                        done, committing = committing, None
                        processed = self._committed(done, processed)
                    # A sync of one page (most syncs) has nothing to overlap its commit with: this
                    # thread finishes it, and no writer thread is started at all.
                    finisher = _INLINE if page.is_last and pages_done == 0 else writer
                    if finisher is _INLINE and _nothing_to_write(page):
                        committing = (_INLINE.submit(self._conclude_alone, listing, page), page)
                    else:
                        committing = (
                            finisher.submit(self._finish, *self._begin(listing, page, pages_done, writes)),
                            page,
                        )
                if committing is not None:
                    done, committing = committing, None
                    processed = self._committed(done, processed)
            finally:
                if committing is not None:
                    # This thread failed while the writer was finishing a page: that page commits
                    # or rolls back on its own; this thread's error is the one raised.
                    wait([committing[0]])
        if not listing.last_seen:
            raise SourceError("the source stopped before its last page; nothing after the last page was kept")

    def _committed(self, done: tuple[Future[None], ChangePage], processed: int) -> int:
        """Wait for the writer's page (raising what it raised), then count and report it."""
        future, page = done
        future.result()
        self.report.pages += 1
        processed += len(page.upserts) + len(page.removals)
        if self.progress:
            self.progress(processed, page.total_hint)
        return processed

    def _decide(self, listing: _Listing, page: ChangePage) -> _PageWrites:
        """Everything ``page`` changes, decided against the mirror as loaded (no database access)."""
        mirror = listing.mirror
        writes = _PageWrites()
        # Within one page the last word on a key wins (duplicated UIDs, replayed items).
        latest: dict[OccurrenceKey, RemoteOccurrence | None] = {}
        for key in page.removals:
            latest[key] = None
        for upsert in page.upserts:
            latest[upsert.key] = upsert
        seen = listing.seen
        for key, item in latest.items():
            self._apply(mirror, key, item, writes)
            if item is not None:
                seen.add(key)
                if item.status is not Status.CANCELLED:
                    listing.live_seen += 1
        if page.complete_uids:
            listed = {key for key, item in latest.items() if item is not None}
            self._sweep_uids(mirror, set(page.complete_uids), listed, page.window, writes)
        if page.is_last:
            listing.last_seen = True
            if page.complete:
                self._sweep(mirror, seen, listing.live_seen, page.window, writes)
        return writes

    def _begin(
        self, listing: _Listing, page: ChangePage, pages_done: int, writes: _PageWrites | None
    ) -> tuple[AbstractContextManager[Session], Session, _Tail]:
        """Open the page's transaction and write all but its history and outbox rows (``_finish``)."""
        transaction = self.store.session()
        session = transaction.__enter__()
        try:
            if not page.is_last:
                self._renew_lease(session)
            if writes is None:
                self._ensure_cipher(session)
                listing.mirror.ensure_loaded(
                    session,
                    [o.key for o in page.upserts]
                    + list(page.removals)
                    + [OccurrenceKey(u) for u in page.complete_uids],
                    everything=page.complete,
                )
                writes = self._decide(listing, page)
            if page.is_last:
                # Decided (the outcome is known), nothing written yet: the lease check comes first.
                self._conclude(session, page.next_cursor)
            tail = self._flush(session, listing.mirror, writes)
            if not page.is_last and (page.complete or not page.resumable) and pages_done == 0:
                # A complete listing that has begun supersedes the old cursor: should it die
                # half way, the next run must list everything again, not short-circuit on a
                # cursor describing content the mirror no longer matches. Likewise a round of
                # changes whose source cannot resume it from the old cursor (ChangePage.resumable).
                session.execute(_SET_CURSOR, {"connection_pk": self.connection_id, "new_cursor": None})
        except BaseException:
            if not transaction.__exit__(*sys.exc_info()):
                raise
        return transaction, session, tail

    def _finish(self, transaction: AbstractContextManager[Session], session: Session, tail: _Tail) -> None:
        """The writer thread's part of a page: its new occurrences (SQLite), history and outbox rows, the commit."""
        try:
            if tail.occurrences:
                insert_tuples(
                    session,
                    _OCCURRENCES,
                    _OCCURRENCE_COLUMNS,
                    tail.occurrences,
                    instants=tail.instants,
                    iso_texts=self.iso_texts,
                )
                self._check_ids(session, tail.after, len(tail.occurrences))
            if tail.history:
                insert_tuples(
                    session, _HISTORY, _HISTORY_COLUMNS, tail.history, instants=tail.instants, iso_texts=self.iso_texts
                )
            if tail.outbox:
                insert_tuples(
                    session, _OUTBOX, _OUTBOX_COLUMNS, tail.outbox, instants=tail.instants, iso_texts=self.iso_texts
                )
            self._checkpoint("before_commit")
        except BaseException:
            if not transaction.__exit__(*sys.exc_info()):
                raise
        transaction.__exit__(None, None, None)
        self._checkpoint("after_commit")

    def _checkpoint(self, name: str) -> None:
        if self.checkpoint:
            self.checkpoint(name)

    def _conclude_alone(self, listing: _Listing, page: ChangePage) -> None:
        """The sync of one page with nothing in it (a push's sync finding nothing new, most of them):
        its one write, the outcome with the cursor and the lease's release, is a statement on its own.

        No transaction around it (``Store.one_statement``): two round trips less to a database
        server than a page's transaction (benchmarks/README.md, "Nothing new, one statement").
        """
        listing.last_seen = True
        self._checkpoint("before_commit")  # nothing is written yet, as before a page's commit
        with self.store.one_statement() as statement:
            self._conclude(statement, page.next_cursor)
        self._checkpoint("after_commit")

    def _conclude(self, session: Session | DbConnection, cursor: str | None) -> None:
        """End the sync in its last page's transaction, or alone (``_conclude_alone``): cursor,
        outcome, lease released (``_CONCLUDE``).

        Committed with the page or not at all: a sync that dies after its last commit leaves no
        lease behind for the next one to wait out, and no outcome older than its cursor.
        """
        outcome = replace(self.report, pages=self.report.pages + 1)  # this page counts once committed
        concluded = session.execute(
            _CONCLUDE,
            {
                "connection_pk": self.connection_id,
                "owner": self.lease_owner,
                "new_cursor": cursor,
                "now": datetime.now(UTC),
                "result": outcome.as_dict(),
            },
        )
        if concluded.rowcount != 1:  # type: ignore[attr-defined]
            raise SyncInProgress(f"connection {self.connection_id}: this sync's lease expired and was taken over")

    def _renew_lease(self, session: Session) -> None:
        renewed = session.execute(
            _RENEW_LEASE,
            {"connection_pk": self.connection_id, "owner": self.lease_owner, "until": datetime.now(UTC) + LEASE_TTL},
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            # The lease expired and another sync took over (a laptop asleep for longer than the
            # lease): writing on would re-apply stale pages over the newer sync's work.
            raise SyncInProgress(f"connection {self.connection_id}: this sync's lease expired and was taken over")

    def _apply(self, mirror: _Mirror, key: OccurrenceKey, occ: RemoteOccurrence | None, writes: _PageWrites) -> None:
        row = mirror.rows.get(key)
        if occ is not None:
            # The instants' text, once: hashed, and written again in the domain event's payload.
            iso_texts = self.iso_texts
            start_iso = iso_texts.get(occ.start) or self._iso_of(occ.start)
            end_iso = iso_texts.get(occ.end) or self._iso_of(occ.end)
            remote_hash = self.hasher(occ, start_iso, end_iso)
            if row is None:
                # A first sighting (every row of a first mirror): decide()'s first case, without
                # building the states it would compare.
                action = Action.CREATE_CANCELLED if occ.status is Status.CANCELLED else Action.CREATE
            else:
                action = decide(row.local_state(), RemoteState(occ.status, occ.start, occ.end, remote_hash))
        else:
            action = decide(row.local_state() if row else None, None)

        if action is Action.NOTHING:
            self.report.unchanged += 1
            if occ is not None and row is not None and occ.provider_id != row.provider_id:
                # Provider ids are lookup keys only; a new one (moved item) is not a change.
                writes.updates.append({"id": row.id, "provider_id": occ.provider_id})
                row.provider_id = occ.provider_id
            return

        if action in (Action.CREATE, Action.CREATE_CANCELLED):
            if occ is None:
                raise RuntimeError("decide() asked to create an occurrence without a remote item")
            writes.inserts.append(_Insert(key, self._columns(occ, remote_hash), action, occ.status, start_iso, end_iso))
            if action is Action.CREATE:
                self.report.created += 1
            else:
                self.report.cancelled += 1
            return

        if row is None:
            raise RuntimeError(f"decide() returned {action} for an occurrence that is not mirrored")
        old_start, old_end = row.start, row.end
        values: dict[str, Any] = {"id": row.id, "updated_at": self.now}
        if action is Action.CANCEL:
            # Keep the last known times and content; a tombstone (removal) carries none.
            values["status"] = Status.CANCELLED.value
            row.status = Status.CANCELLED
            self.report.cancelled += 1
            kind = "cancelled"
        else:
            if occ is None:
                raise RuntimeError(f"decide() returned {action} without a remote item")
            values.update(zip(_OCCURRENCE_COLUMNS, self._columns(occ, remote_hash), strict=True))
            del values["created_at"]
            row.status, row.start, row.end = occ.status, occ.start, occ.end
            row.content_hash, row.provider_id = remote_hash, occ.provider_id
            kind = {
                Action.RESTORE: "restored",
                Action.RESCHEDULE: "rescheduled",
                Action.UPDATE: "updated",
            }[action]
            counter = {"restored": "restored", "rescheduled": "rescheduled", "updated": "updated"}[kind]
            setattr(self.report, counter, getattr(self.report, counter) + 1)
        writes.updates.append(values)
        self._record(writes, row.id, kind, old_start, old_end, row.start, row.end)

    def _cipher(self) -> OwnerCipher:
        if self.cipher is None:
            raise RuntimeError("the therapist's cipher is loaded at the start of every page")
        return self.cipher

    def _columns(self, occ: RemoteOccurrence, remote_hash: str) -> tuple[Any, ...]:
        """The occurrence's row, in ``_OCCURRENCE_COLUMNS`` order."""
        video_url = detect_video_url(occ.conference_url, occ.url, occ.location, occ.description)
        return (
            self.connection_id,
            occ.key.ical_uid,
            occ.key.recurrence_id,
            occ.provider_id,
            occ.status.value,
            occ.all_day,
            occ.start,
            occ.end,
            occ.timezone,
            seal_occurrence(self._cipher(), self.connection_id, occ, video_url),
            remote_hash,
            self.now,
            self.now,
        )

    def _record(
        self,
        writes: _PageWrites,
        occurrence_id: int,
        kind: str,
        old_start: datetime | None,
        old_end: datetime | None,
        new_start: datetime | None,
        new_end: datetime | None,
    ) -> None:
        """History of one change of a mirrored occurrence, and its domain event.

        A first sighting's rows are written by ``_flush`` itself (one per row of a first mirror).
        """
        writes.history.append((occurrence_id, kind, old_start, old_end, new_start, new_end, self.now))
        # Payloads carry ids and instants only: nothing that could name a client.
        payload = _payload(
            self._iso_or_none(old_start),
            self._iso_or_none(old_end),
            self._iso_or_none(new_start),
            self._iso_or_none(new_end),
        )
        writes.outbox.append((f"occurrence.{kind}", occurrence_id, payload))

    def _sweep(
        self,
        mirror: _Mirror,
        seen: set[OccurrenceKey],
        live_seen: int,
        window: tuple[datetime, datetime] | None,
        writes: _PageWrites,
    ) -> None:
        # Every identity seen has a row, or gets one with this page's inserts (not yet in the rows):
        # when that accounts for all of them, the listing showed every row and nothing is missing
        # (a first mirror, or a relisting that lost nothing) without looking at each row.
        if len(seen) == len(mirror.rows) + len(writes.inserts):
            return
        missing = [
            key
            for key, row in mirror.rows.items()
            if key not in seen
            and row.status is not Status.CANCELLED
            and (window is None or window[0] <= row.start < window[1])
        ]
        if not missing:
            return
        if live_seen == 0 and not self.force_empty:
            # vdirsyncer's "storage empty" guard: a feed that suddenly lists nothing is far more
            # often a broken export or a wrong URL than a therapist who cancelled everything.
            raise EmptySourceRefused(
                f"the source now lists no events but the mirror has {len(missing)}; "
                "refusing to cancel them all (re-run with --allow-empty if this is intended)"
            )
        for key in missing:
            self._apply(mirror, key, None, writes)

    def _sweep_uids(
        self,
        mirror: _Mirror,
        uids: set[str],
        listed: set[OccurrenceKey],
        window: tuple[datetime, datetime] | None,
        writes: _PageWrites,
    ) -> None:
        # A page complete for some UIDs: their live occurrences it did not list are gone (no
        # empty-source guard: the source named these UIDs itself, nothing suggests a broken feed).
        for key, row in list(mirror.rows.items()):
            if (
                key.ical_uid in uids
                and key not in listed
                and row.status is not Status.CANCELLED
                and (window is None or window[0] <= row.start < window[1])
            ):
                self._apply(mirror, key, None, writes)

    def _flush(self, session: Session, mirror: _Mirror, writes: _PageWrites) -> _Tail:
        # Plain multi-row inserts on the tables (not the ORM, not RETURNING): SQLite cannot batch
        # an INSERT ... RETURNING, and the ORM splits batches whenever NULL columns differ, which
        # made a first mirror of 10,000 events one statement per row (benchmarks/README.md).
        # One memo of converted instants for the whole transaction: ``now`` is on every row, and an
        # occurrence's start and end are written again in its history.
        instants: dict[Any, Any] = {}
        tail = _Tail([], [], instants)
        if writes.inserts:
            before = session.scalar(select(func.max(Occurrence.id))) or 0
            keys = [i.key for i in writes.inserts]
            if session.get_bind().dialect.name == "sqlite" and before + len(keys) < _SQLITE_LARGEST_ROWID:
                # SQLite numbers a new row the largest rowid plus one, in the order the rows are
                # written, and this transaction has held the database's write lock since it renewed
                # the lease: the ids are known now. The writer thread inserts the rows and checks
                # that they got exactly these ids (``_check_ids``) before anything commits.
                new_ids: Sequence[int] = range(before + 1, before + 1 + len(keys))
                tail.occurrences, tail.after = [i.row for i in writes.inserts], before
            else:
                insert_tuples(
                    session,
                    _OCCURRENCES,
                    _OCCURRENCE_COLUMNS,
                    [i.row for i in writes.inserts],
                    instants=instants,
                    iso_texts=self.iso_texts,
                )
                by_identity = self._ids_of(session, keys, after=before)
                new_ids = [by_identity[k.ical_uid, k.recurrence_id] for k in keys]
            rows, history, events, now = mirror.rows, writes.history, writes.outbox, self.now
            for insert, new_id in zip(writes.inserts, new_ids, strict=True):
                row = insert.row
                # row: connection_id, ical_uid, recurrence_id, provider_id, status, all_day, start_utc,
                # end_utc, timezone, content, content_hash, ... (_OCCURRENCE_COLUMNS)
                rows[insert.key] = _Row(new_id, insert.status, row[6], row[7], row[10], row[3])
                # What _record writes for a first sighting, spelled out: a first mirror has one per row.
                if insert.action is Action.CREATE:
                    history.append((new_id, "created", None, None, row[6], row[7], now))
                    events.append(("occurrence.created", new_id, _created_payload(insert.start_iso, insert.end_iso)))
                else:  # CREATE_CANCELLED: history only, nobody knew of it (core.sync.decide)
                    history.append((new_id, "cancelled", None, None, row[6], row[7], now))
        if writes.updates:
            session.execute(update(Occurrence), writes.updates)
        if writes.inserts or writes.updates:
            # In the same transaction as the rows: a reader that sees the old revision also sees
            # the old rows (core.mirror.occurrence_listing relies on it).
            session.execute(_NEXT_REVISION, {"connection_pk": self.connection_id})
        therapist_id, connection_id, now = self.therapist_id, self.connection_id, self.now
        outbox = [
            (event_id, kind, therapist_id, connection_id, occurrence_id, payload, now)
            for event_id, (kind, occurrence_id, payload) in zip(
                _event_ids(len(writes.outbox)), writes.outbox, strict=True
            )
        ]
        tail.history, tail.outbox = writes.history, outbox
        return tail

    def _check_ids(self, session: Session, after: int, count: int) -> None:
        """The occurrences just inserted above ``after`` are this connection's, numbered ``after + 1`` on."""
        if not self._consecutive_above(session, after, count):
            raise RuntimeError("inserted occurrences did not get the ids they were numbered with; nothing was kept")

    def _consecutive_above(self, session: Session, after: int, count: int) -> bool:
        """Whether the occurrences above id ``after`` are exactly ``count`` consecutive ids, all this connection's."""
        found = session.execute(
            select(
                func.count(),
                func.min(Occurrence.id),
                func.max(Occurrence.id),
                func.min(Occurrence.connection_id),
                func.max(Occurrence.connection_id),
            ).where(Occurrence.id > after)
        ).one()
        return tuple(found) == (count, after + 1, after + count, self.connection_id, self.connection_id)

    def _ids_of(self, session: Session, keys: list[OccurrenceKey], *, after: int) -> dict[tuple[str, str], int]:
        """The ids the rows of ``keys`` just inserted got: one range read on the primary key.

        Ids only grow (SQLite's rowid, PostgreSQL's sequence), so the new rows are above the
        largest id this transaction saw before inserting, and no other sync writes this connection
        meanwhile (the lease). The condition is the id alone, so both databases walk the primary
        key from ``after`` (with ``connection_id`` in it they chose the connection's index and read
        all of its rows, however few were new); the rows are matched to this connection and to
        ``keys`` here, and every key must be found. Keyed by ``(ical_uid, recurrence_id)``: plain
        tuples hash in C, and a page has thousands of them.
        """
        if self._consecutive_above(session, after, len(keys)):
            # The rows above ``after`` are exactly ``len(keys)`` consecutive ids, all this
            # connection's: the rows just inserted (nobody else writes this connection, the lease),
            # numbered in the order they were written (SQLite's rowid is the largest plus one, a
            # PostgreSQL sequence only grows within a session). No rows to read back.
            return {(k.ical_uid, k.recurrence_id): after + 1 + i for i, k in enumerate(keys)}
        wanted = {(k.ical_uid, k.recurrence_id) for k in keys}
        found: dict[tuple[str, str], int] = {}
        rows = session.execute(
            select(Occurrence.id, Occurrence.connection_id, Occurrence.ical_uid, Occurrence.recurrence_id).where(
                Occurrence.id > after
            )
        )
        connection_id = self.connection_id
        for occurrence_id, row_connection, ical_uid, recurrence_id in rows:
            if row_connection != connection_id:
                continue  # another connection's sync, committed meanwhile (PostgreSQL)
            identity = (ical_uid, recurrence_id)
            if identity in wanted:
                found[identity] = occurrence_id
        if len(found) != len(wanted):
            # Ids below ``after``: a row was given an id by hand above PostgreSQL's sequence (a
            # restore, a manual fix). Look the rest up by identity, as slowly as that takes.
            self._ids_by_uid(session, wanted - found.keys(), found)
        if len(found) != len(wanted):
            raise RuntimeError(f"{len(wanted) - len(found)} inserted occurrences could not be read back")
        return found

    def _ids_by_uid(self, session: Session, keys: set[tuple[str, str]], found: dict[tuple[str, str], int]) -> None:
        uids = sorted({uid for uid, _ in keys})
        for i in range(0, len(uids), 500):  # stay under bound-parameter limits
            rows = session.execute(
                select(Occurrence.id, Occurrence.ical_uid, Occurrence.recurrence_id).where(
                    Occurrence.connection_id == self.connection_id, Occurrence.ical_uid.in_(uids[i : i + 500])
                )
            )
            for row in rows:
                identity = (row.ical_uid, row.recurrence_id)
                if identity in keys:
                    found[identity] = row.id


def _lease_owner() -> str:
    # host:pid lets a later run on the same machine take over the lease of a killed process at
    # once instead of waiting for it to expire.
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


def _holder_is_dead(owner: str | None) -> bool:
    if not owner:
        return False
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:30] or not pid_text.isdigit():
        return False  # another machine's lease: only its expiry can free it
    pid = int(pid_text)
    if pid == os.getpid():
        return False  # this process holds it (e.g. another thread is syncing)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


@dataclass(frozen=True, slots=True)
class _Leased:
    """What a sync needs of the connection it has just leased."""

    id: int
    therapist_id: int
    name: str
    cursor: str | None


_LEASED = select(_CONNECTIONS.c.id, _CONNECTIONS.c.therapist_id, _CONNECTIONS.c.name, _CONNECTIONS.c.cursor).where(
    _CONNECTIONS.c.id == bindparam("connection_pk")
)


_TAKE_LEASE_RETURNING = _TAKE_LEASE.returning(
    _CONNECTIONS.c.id, _CONNECTIONS.c.therapist_id, _CONNECTIONS.c.name, _CONNECTIONS.c.cursor
)


def _leased(session: Session, connection_id: int) -> _Leased:
    """The connection just leased, read in the lease's own transaction (one transaction less per sync)."""
    row = session.execute(_LEASED, {"connection_pk": connection_id}).one()
    return _Leased(row.id, row.therapist_id, row.name, row.cursor)


def _nothing_to_write(page: ChangePage) -> bool:
    """Whether ``page`` changes nothing in the mirror: no items, and no promise to sweep by."""
    return not (page.upserts or page.removals or page.complete_uids or page.complete)


def _acquire_lease(store: Store, connection_id: int, owner: str) -> _Leased:
    now = datetime.now(UTC)
    taking = {"connection_pk": connection_id, "now": now, "owner": owner, "until": now + LEASE_TTL}
    returning = store.engine.dialect.update_returning
    if returning:
        # The lease and what the sync needs of the connection in one statement, its own transaction.
        with store.one_statement() as statement:
            row = statement.execute(_TAKE_LEASE_RETURNING, taking).first()
        if row is not None:
            return _Leased(row.id, row.therapist_id, row.name, row.cursor)
    with store.session() as session:
        if not returning and session.execute(_TAKE_LEASE, taking).rowcount == 1:  # type: ignore[attr-defined]
            return _leased(session, connection_id)
        found = session.execute(
            select(Connection.lock_owner, Connection.removed_at).where(Connection.id == connection_id)
        ).first()
        if found is None or found.removed_at is not None:
            raise ConnectionGone(f"no connection with id {connection_id}")
        holder = found.lock_owner
        if _holder_is_dead(holder):
            log.warning("taking over the sync lease of a process that no longer runs")
            taken = session.execute(
                update(Connection)
                .where(Connection.id == connection_id, Connection.lock_owner == holder)
                .values(lock_owner=owner, lock_expires_at=now + LEASE_TTL)
            )
            if taken.rowcount == 1:  # type: ignore[attr-defined]
                return _leased(session, connection_id)
        raise SyncInProgress(f"connection {connection_id} is already being synced")


def _release_lease(store: Store, connection_id: int, owner: str) -> None:
    with store.session() as session:
        session.execute(
            update(Connection)
            .where(Connection.id == connection_id, Connection.lock_owner == owner)
            .values(lock_owner=None, lock_expires_at=None)
        )


def sync_connection(
    store: Store,
    connection_id: int,
    source: ChangeSource,
    *,
    force_empty: bool = False,
    progress: Progress | None = None,
    checkpoint: Checkpoint | None = None,
    now: datetime | None = None,
) -> SyncReport:
    """Bring the mirror of one connection up to date with ``source``.

    Raises :class:`SyncInProgress` when another sync holds the connection, and
    :class:`SourceError` (recorded on the connection as its health) when the source fails.
    """
    owner = _lease_owner()
    connection = _acquire_lease(store, connection_id, owner)
    if isinstance(source, ConsultsMirror):
        source.consult_mirror(functools.partial(mirrored_keys, store, connection_id))
    released = False  # the outcome's UPDATE releases the lease too; the finally only when it did not run
    try:
        report = SyncReport(connection_id=connection.id, connection=connection.name)
        run = _Run(
            store,
            connection,
            report,
            force_empty=force_empty,
            now=now or datetime.now(UTC),
            progress=progress,
            checkpoint=checkpoint,
            lease_owner=owner,
        )
        try:
            try:
                run.run(source, connection.cursor)
            except CursorExpired:
                if connection.cursor is None:
                    raise SourceError("the source rejected a full listing as an expired cursor") from None
                log.info("cursor expired; falling back to a full listing", extra={"connection_id": connection_id})
                report.full_resync = True
                try:
                    run.run(source, None)
                except CursorExpired as exc:
                    raise SourceError("the source rejected a full listing as an expired cursor") from exc
        except SourceError as exc:
            health = "needs_reconnect" if isinstance(exc, ReauthorizationRequired) else "error"
            _record_failure(store, connection_id, report, error=str(exc), health=health, release=owner)
            released = True
            raise
        released = True  # with the outcome, by the last page's transaction (_Run._conclude)
        return report
    finally:
        if not released:
            _release_lease(store, connection_id, owner)


def mirrored_keys(store: Store, connection_id: int, provider_ids: Sequence[str]) -> dict[str, OccurrenceKey]:
    """The identity ``connection_id``'s mirror holds under each of ``provider_ids`` (a live one first).

    Its own short transaction, outside the sync's pages: a source asks while it makes a page.
    """
    wanted = sorted(set(provider_ids))
    found: dict[str, OccurrenceKey] = {}
    live: set[str] = set()
    with store.session() as session:
        for i in range(0, len(wanted), 500):  # stay under bound-parameter limits
            query = select(
                Occurrence.provider_id, Occurrence.ical_uid, Occurrence.recurrence_id, Occurrence.status
            ).where(Occurrence.connection_id == connection_id, Occurrence.provider_id.in_(wanted[i : i + 500]))
            for r in session.execute(query):
                if r.provider_id in live:
                    continue
                found[r.provider_id] = OccurrenceKey(r.ical_uid, r.recurrence_id)
                if r.status != Status.CANCELLED:
                    live.add(r.provider_id)
    return found


def _record_failure(
    store: Store, connection_id: int, report: SyncReport, *, error: str, health: str, release: str
) -> None:
    """Store a sync that failed (its error as the connection's health) and give up ``release``'s lease."""
    # "needs_reconnect": retrying cannot help until the user connects again (the error says how).
    # A connection already marked "needs_attention" (core.sync.backoff) keeps it while it fails.
    new_health: Any = health
    if health == "error":
        new_health = case((_CONNECTIONS.c.health == "needs_attention", "needs_attention"), else_="error")
    values = {
        "last_sync_at": datetime.now(UTC),
        "last_result": report.as_dict(),
        "health": new_health,
        "last_error": error,
    }
    with store.session() as session:
        session.execute(_RELEASE_WITH.values(**values), {"connection_pk": connection_id, "owner": release})
