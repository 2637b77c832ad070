"""The sync engine: applies a source's pages of changes to the mirror.

Guarantees (DESIGN.md, "Sync"):
- pages are applied idempotently, each in its own transaction, together with the domain events
  (outbox rows) and history rows describing what changed;
- the new cursor is committed only with the last page it covers, so a crash at any point makes
  the next run redo (idempotently) whatever was not committed;
- a complete listing sweeps what it did not show (mark-and-sweep, scoped to the listing's
  window, so occurrences that merely left the window are kept as they were);
- a cursor the source no longer accepts falls back to one complete listing;
- a source that had occurrences and suddenly lists none is refused unless forced;
- one sync per connection at a time (a lease row in ``connections``).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Table, or_, select, update
from sqlalchemy.orm import Session

from core.crypto import Owner, OwnerCipher
from core.store.bulk import insert_rows
from core.store.db import Store
from core.store.models import Connection, Occurrence, OccurrenceHistory, OutboxEvent
from core.sync.content import OccurrenceContent, hash_key, seal
from core.sync.decide import Action, LocalState, RemoteState, decide
from core.sync.hashing import content_hash
from core.sync.types import (
    ChangeSource,
    CursorExpired,
    OccurrenceKey,
    ReauthorizationRequired,
    RemoteOccurrence,
    SourceError,
    Status,
)
from core.video_links import detect_video_url

log = logging.getLogger(__name__)

LEASE_TTL = timedelta(minutes=10)

_OCCURRENCES: Table = Occurrence.__table__  # type: ignore[assignment]
_HISTORY: Table = OccurrenceHistory.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]

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


@dataclass
class _PageWrites:
    """Everything one page changes, gathered so it is written in a few bulk statements."""

    inserts: list[tuple[OccurrenceKey, dict[str, Any], Action]] = field(default_factory=list)
    updates: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    outbox: list[dict[str, Any]] = field(default_factory=list)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


class _Run:
    def __init__(
        self,
        store: Store,
        connection: Connection,
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
        self.hash_key = b""

    def _ensure_cipher(self, session: Session) -> OwnerCipher:
        if self.cipher is None:
            self.cipher = self.store.keyring.cipher(session, Owner("therapist", self.therapist_id))
            self.hash_key = hash_key(self.cipher)
        return self.cipher

    def run(self, source: ChangeSource, cursor: str | None) -> None:
        mirror = _Mirror(self.connection_id)
        seen: set[OccurrenceKey] = set()
        live_seen = 0
        processed = 0
        last_seen = False
        for pages_done, page in enumerate(source.list_changes(cursor)):
            if last_seen:
                raise SourceError("the source sent pages after its last page")
            with self.store.session() as session:
                self._renew_lease(session)
                self._ensure_cipher(session)
                mirror.ensure_loaded(
                    session,
                    [o.key for o in page.upserts]
                    + list(page.removals)
                    + [OccurrenceKey(u) for u in page.complete_uids],
                    everything=page.complete,
                )
                writes = _PageWrites()
                # Within one page the last word on a key wins (duplicated UIDs, replayed items).
                latest: dict[OccurrenceKey, RemoteOccurrence | None] = {}
                for key in page.removals:
                    latest[key] = None
                for upsert in page.upserts:
                    latest[upsert.key] = upsert
                for key, item in latest.items():
                    self._apply(mirror, key, item, writes)
                    if item is not None:
                        seen.add(key)
                        if item.status is not Status.CANCELLED:
                            live_seen += 1
                if page.complete_uids:
                    listed = {key for key, item in latest.items() if item is not None}
                    self._sweep_uids(mirror, set(page.complete_uids), listed, page.window, writes)
                if page.is_last:
                    last_seen = True
                    if page.complete:
                        self._sweep(mirror, seen, live_seen, page.window, writes)
                self._flush(session, mirror, writes)
                if page.is_last:
                    session.execute(
                        update(Connection).where(Connection.id == self.connection_id).values(cursor=page.next_cursor)
                    )
                elif page.complete and pages_done == 0:
                    # A complete listing that has begun supersedes the old cursor: should it die
                    # half way, the next run must list everything again, not short-circuit on a
                    # cursor describing content the mirror no longer matches.
                    session.execute(update(Connection).where(Connection.id == self.connection_id).values(cursor=None))
                self._checkpoint("before_commit")
            self._checkpoint("after_commit")
            self.report.pages += 1
            processed += len(page.upserts) + len(page.removals)
            if self.progress:
                self.progress(processed, page.total_hint)
        if not last_seen:
            raise SourceError("the source stopped before its last page; nothing after the last page was kept")

    def _checkpoint(self, name: str) -> None:
        if self.checkpoint:
            self.checkpoint(name)

    def _renew_lease(self, session: Session) -> None:
        renewed = session.execute(
            update(Connection)
            .where(Connection.id == self.connection_id, Connection.lock_owner == self.lease_owner)
            .values(lock_expires_at=datetime.now(UTC) + LEASE_TTL)
        )
        if renewed.rowcount != 1:  # type: ignore[attr-defined]
            # The lease expired and another sync took over (a laptop asleep for longer than the
            # lease): writing on would re-apply stale pages over the newer sync's work.
            raise SyncInProgress(f"connection {self.connection_id}: this sync's lease expired and was taken over")

    def _apply(self, mirror: _Mirror, key: OccurrenceKey, occ: RemoteOccurrence | None, writes: _PageWrites) -> None:
        row = mirror.rows.get(key)
        remote_hash = content_hash(occ, self.hash_key) if occ is not None else ""
        remote = RemoteState(occ.status, occ.start, occ.end, remote_hash) if occ is not None else None
        action = decide(row.local_state() if row else None, remote)

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
            writes.inserts.append((key, self._columns(occ, remote_hash), action))
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
            values.update(self._columns(occ, remote_hash))
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

    def _columns(self, occ: RemoteOccurrence, remote_hash: str) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "ical_uid": occ.key.ical_uid,
            "recurrence_id": occ.key.recurrence_id,
            "provider_id": occ.provider_id,
            "status": occ.status.value,
            "all_day": occ.all_day,
            "start_utc": occ.start,
            "end_utc": occ.end,
            "timezone": occ.timezone,
            "content": seal(
                self._cipher(),
                self.connection_id,
                occ.key,
                OccurrenceContent.of(occ, detect_video_url(occ.conference_url, occ.url, occ.location, occ.description)),
            ),
            "content_hash": remote_hash,
            "created_at": self.now,
            "updated_at": self.now,
        }

    def _record(
        self,
        writes: _PageWrites,
        occurrence_id: int,
        kind: str,
        old_start: datetime | None,
        old_end: datetime | None,
        new_start: datetime | None,
        new_end: datetime | None,
        *,
        emit: bool = True,
    ) -> None:
        writes.history.append(
            {
                "occurrence_id": occurrence_id,
                "kind": kind,
                "old_start_utc": old_start,
                "old_end_utc": old_end,
                "new_start_utc": new_start,
                "new_end_utc": new_end,
                "at": self.now,
            }
        )
        if not emit:
            return
        # Payloads carry ids and instants only: nothing that could name a client.
        writes.outbox.append(
            {
                "event_id": str(uuid.uuid4()),
                "kind": f"occurrence.{kind}",
                "therapist_id": self.therapist_id,
                "connection_id": self.connection_id,
                "occurrence_id": occurrence_id,
                "payload": {
                    "old_start": _iso(old_start),
                    "old_end": _iso(old_end),
                    "start": _iso(new_start),
                    "end": _iso(new_end),
                },
                "created_at": self.now,
            }
        )

    def _sweep(
        self,
        mirror: _Mirror,
        seen: set[OccurrenceKey],
        live_seen: int,
        window: tuple[datetime, datetime] | None,
        writes: _PageWrites,
    ) -> None:
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

    def _flush(self, session: Session, mirror: _Mirror, writes: _PageWrites) -> None:
        # Plain multi-row inserts on the tables (not the ORM, not RETURNING): SQLite cannot batch
        # an INSERT ... RETURNING, and the ORM splits batches whenever NULL columns differ, which
        # made a first mirror of 10,000 events one statement per row (benchmarks/README.md).
        if writes.inserts:
            insert_rows(session, _OCCURRENCES, [columns for _, columns, _ in writes.inserts])
            new_ids = self._ids_of(session, [key for key, _, _ in writes.inserts])
            for key, columns, action in writes.inserts:
                new_id = new_ids[key]
                mirror.rows[key] = _Row(
                    new_id,
                    Status(columns["status"]),
                    columns["start_utc"],
                    columns["end_utc"],
                    columns["content_hash"],
                    columns["provider_id"],
                )
                kind = "created" if action is Action.CREATE else "cancelled"
                self._record(
                    writes,
                    new_id,
                    kind,
                    None,
                    None,
                    columns["start_utc"],
                    columns["end_utc"],
                    emit=action is Action.CREATE,
                )
        if writes.updates:
            session.execute(update(Occurrence), writes.updates)
        if writes.inserts or writes.updates:
            # In the same transaction as the rows: a reader that sees the old revision also sees
            # the old rows (core.mirror.occurrence_listing relies on it).
            session.execute(
                update(Connection)
                .where(Connection.id == self.connection_id)
                .values(listing_revision=Connection.listing_revision + 1)
            )
        if writes.history:
            insert_rows(session, _HISTORY, writes.history)
        if writes.outbox:
            insert_rows(session, _OUTBOX, writes.outbox)

    def _ids_of(self, session: Session, keys: list[OccurrenceKey]) -> dict[OccurrenceKey, int]:
        wanted = set(keys)
        uids = sorted({k.ical_uid for k in keys})
        found: dict[OccurrenceKey, int] = {}
        for i in range(0, len(uids), 500):  # stay under bound-parameter limits
            rows = session.execute(
                select(Occurrence.id, Occurrence.ical_uid, Occurrence.recurrence_id).where(
                    Occurrence.connection_id == self.connection_id, Occurrence.ical_uid.in_(uids[i : i + 500])
                )
            )
            for row in rows:
                key = OccurrenceKey(row.ical_uid, row.recurrence_id)
                if key in wanted:
                    found[key] = row.id
        return found


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


def _acquire_lease(store: Store, connection_id: int, owner: str) -> None:
    now = datetime.now(UTC)
    with store.session() as session:
        result = session.execute(
            update(Connection)
            .where(
                Connection.id == connection_id,
                # A removed connection is never synced again (core.mirror.remove_connection).
                Connection.removed_at.is_(None),
                or_(Connection.lock_owner.is_(None), Connection.lock_expires_at < now),
            )
            .values(lock_owner=owner, lock_expires_at=now + LEASE_TTL)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            return
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
                return
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
    _acquire_lease(store, connection_id, owner)
    try:
        with store.session() as session:
            connection = session.get_one(Connection, connection_id)
            session.expunge(connection)
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
            _record_outcome(store, connection_id, report, error=str(exc), health=health)
            raise
        _record_outcome(store, connection_id, report, error=None)
        return report
    finally:
        _release_lease(store, connection_id, owner)


def _record_outcome(
    store: Store, connection_id: int, report: SyncReport, *, error: str | None, health: str = "error"
) -> None:
    now = datetime.now(UTC)
    values: dict[str, Any] = {"last_sync_at": now, "last_result": report.as_dict()}
    if error is None:
        values.update(health="ok", last_error=None, last_success_at=now)
    else:
        # "needs_reconnect": retrying cannot help until the user connects again (the error says how).
        values.update(health=health, last_error=error)
    with store.session() as session:
        session.execute(update(Connection).where(Connection.id == connection_id).values(**values))
