"""Read and manage the mirror: therapists, connections, occurrences (no provider knowledge)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, select, update
from sqlalchemy.engine import Connection as DbConnection
from sqlalchemy.orm import Session, defer

from core.crypto import Owner
from core.store.db import Store
from core.store.models import Connection, Occurrence, OccurrenceHistory, Therapist
from core.sync.content import OccurrenceContent, content_context_of, parse_content, unseal
from core.sync.types import OccurrenceKey, Status


def _credentials_context(connection_id: int) -> str:
    return f"connections.credentials|{connection_id}"


def _seal_config(store: Store, session: Session, connection: Connection, config: dict[str, Any]) -> None:
    cipher = store.keyring.cipher(session, Owner("therapist", connection.therapist_id))
    connection.credentials = cipher.encrypt(json.dumps(config).encode(), _credentials_context(connection.id))


def _open_config(store: Store, session: Session, connection: Connection) -> dict[str, Any]:
    if connection.credentials is None:
        return {}
    owner = Owner("therapist", connection.therapist_id)
    config: dict[str, Any] = json.loads(
        store.keyring.decrypt(session, owner, connection.credentials, _credentials_context(connection.id))
    )
    return config


def ensure_therapist(store: Store, email: str, *, timezone: str = "UTC") -> int:
    """Return the id of the therapist with ``email``, creating it when absent."""
    with store.session() as session:
        existing = session.scalar(select(Therapist.id).where(Therapist.email == email))
        if existing is not None:
            return existing
        therapist = Therapist(email=email, timezone=timezone)
        session.add(therapist)
        session.flush()
        return therapist.id


def therapist_timezone(store: Store, therapist_id: int) -> str:
    with store.session() as session:
        return session.get_one(Therapist, therapist_id).timezone


class ConnectionNameTaken(ValueError):
    """Another connection of the therapist (not removed) already has that name."""


def _check_name_free(session: Session, therapist_id: int, name: str, *, except_id: int | None = None) -> None:
    # A removed connection gives its name back: reconnecting "work" after removing it must work.
    query = select(Connection.id).where(
        Connection.therapist_id == therapist_id, Connection.name == name, Connection.removed_at.is_(None)
    )
    if except_id is not None:
        query = query.where(Connection.id != except_id)
    if session.scalar(query.limit(1)) is not None:
        raise ConnectionNameTaken(f"a connection named {name!r} already exists")


def add_connection(store: Store, therapist_id: int, provider: str, name: str, settings: dict[str, Any]) -> int:
    """Create a connection and return its id; names are unique per therapist.

    ``settings`` is what the provider needs to connect; it is stored encrypted (a feed URL can
    embed a secret), bound to this connection. Raises :class:`ConnectionNameTaken`.
    """
    with store.session() as session:
        _check_name_free(session, therapist_id, name)
        connection = Connection(therapist_id=therapist_id, provider=provider, name=name, settings={})
        session.add(connection)
        session.flush()
        _seal_config(store, session, connection, settings)
        return connection.id


def update_connection_settings(store: Store, connection_id: int, settings: dict[str, Any]) -> None:
    """Replace a connection's settings (re-encrypted), e.g. after a provider refreshed its OAuth token."""
    with store.session() as session:
        connection = session.get(Connection, connection_id)
        if connection is None:
            raise LookupError(f"no connection with id {connection_id}")
        _seal_config(store, session, connection, settings)


def update_connection_settings_locked(
    store: Store, connection_id: int, step: Callable[[dict[str, Any]], dict[str, Any] | None]
) -> dict[str, Any]:
    """Run ``step(settings as stored now)`` holding the connection's lock; store and return what it returns.

    ``step`` returning None keeps the stored settings (and they are returned). The lock is taken by
    a no-op UPDATE of the connection's row before anything is read, as
    ``core.video.service.update_credentials_locked`` does: the row's lock on PostgreSQL, the write
    lock on SQLite (busy_timeout makes the second writer wait), held until commit. So two
    processes renewing one connection's OAuth token run one after the other, and the second reads
    what the first stored instead of redeeming the refresh token again. ``step`` may make one
    token request (with a timeout) while the lock is held; never a whole sync.
    """
    with store.session() as session:
        locked = session.execute(
            update(Connection).where(Connection.id == connection_id).values(health=Connection.health)
        )
        if locked.rowcount != 1:  # type: ignore[attr-defined]
            raise LookupError(f"no connection with id {connection_id}")
        connection = session.scalars(
            select(Connection).where(Connection.id == connection_id).execution_options(populate_existing=True)
        ).one()
        current = _open_config(store, session, connection)
        new = step(current)
        if new is None:
            return current
        _seal_config(store, session, connection, new)
        return new


@dataclass(frozen=True)
class ConnectionView:
    id: int
    therapist_id: int
    provider: str
    name: str
    settings: dict[str, Any]
    health: str
    last_error: str | None
    last_sync_at: datetime | None
    last_success_at: datetime | None
    last_result: dict[str, Any] | None
    occurrences: int | None  # live occurrences mirrored; None when not counted (read for a sync)
    # Sync backoff (core.sync.backoff): no sync before backoff_until; failures in a row and since when.
    backoff_until: datetime | None = None
    consecutive_failures: int = 0
    failing_since: datetime | None = None


def _connection_view(
    store: Store, session: Session, c: Connection, occurrences: int | None, *, with_settings: bool
) -> ConnectionView:
    return ConnectionView(
        id=c.id,
        therapist_id=c.therapist_id,
        provider=c.provider,
        name=c.name,
        settings=_open_config(store, session, c) if with_settings else {},
        health=c.health,
        last_error=c.last_error,
        last_sync_at=c.last_sync_at,
        last_success_at=c.last_success_at,
        last_result=c.last_result,
        occurrences=occurrences,
        backoff_until=c.backoff_until,
        consecutive_failures=c.consecutive_failures or 0,
        failing_since=c.failing_since,
    )


def _occurrence_counts(session: Session, therapist_id: int | None, connection_id: int | None = None) -> dict[int, int]:
    query = (
        select(Occurrence.connection_id, func.count())
        .where(Occurrence.status != Status.CANCELLED.value)
        .group_by(Occurrence.connection_id)
    )
    if therapist_id is not None:
        query = query.join(Connection, Connection.id == Occurrence.connection_id).where(
            Connection.therapist_id == therapist_id
        )
    if connection_id is not None:
        query = query.where(Occurrence.connection_id == connection_id)
    return {connection: count for connection, count in session.execute(query)}


def list_connections(
    store: Store, therapist_id: int | None = None, *, with_settings: bool = True
) -> list[ConnectionView]:
    """The connections (of one therapist, or all), removed ones left out.

    ``with_settings=False`` skips decrypting what the provider needs (``settings`` is then empty):
    a listing for people never shows it.
    """
    with store.session() as session:
        counts = _occurrence_counts(session, therapist_id)
        query = select(Connection).where(Connection.removed_at.is_(None)).order_by(Connection.id)
        if therapist_id is not None:
            query = query.where(Connection.therapist_id == therapist_id)
        return [
            _connection_view(store, session, c, counts.get(c.id, 0), with_settings=with_settings)
            for c in session.scalars(query)
        ]


def _live_connection(session: Session, therapist_id: int, connection_id: int) -> Connection | None:
    return session.scalar(
        select(Connection).where(
            Connection.id == connection_id,
            Connection.therapist_id == therapist_id,
            Connection.removed_at.is_(None),
        )
    )


# Built once: every sync job starts with it. Without the cursor, which the sync reads again with
# its lease (core.sync.engine) and which an Outlook connection keeps at ~150 bytes per event.
_CONNECTION_TO_SYNC = (
    select(Connection, Therapist.timezone)
    .join(Therapist, Therapist.id == Connection.therapist_id)
    .where(Connection.id == bindparam("connection_pk"), Connection.removed_at.is_(None))
    .options(defer(Connection.cursor))
)


def connection_to_sync(store: Store, connection_id: int) -> tuple[ConnectionView, str] | None:
    """A live connection with its settings, and its therapist's time zone: what a sync needs.

    One statement in autocommit (:meth:`Store.one_statement`), and no occurrence count
    (``occurrences`` is None): a sync shows none, and counting reads every live occurrence of the
    connection on every sync.
    """
    with store.one_statement() as statement, Session(bind=statement) as session:
        # One read (plus the therapist's data key, the first time this process decrypts with it).
        row = session.execute(_CONNECTION_TO_SYNC, {"connection_pk": connection_id}).first()
        if row is None:
            return None
        connection, timezone = row
        return _connection_view(store, session, connection, None, with_settings=True), str(timezone)


def get_connection(
    store: Store, therapist_id: int, connection_id: int, *, with_settings: bool = True
) -> ConnectionView | None:
    """One connection of this therapist, or None (unknown, another therapist's, or removed)."""
    with store.session() as session:
        c = _live_connection(session, therapist_id, connection_id)
        if c is None:
            return None
        count = _occurrence_counts(session, therapist_id, c.id).get(c.id, 0)
        return _connection_view(store, session, c, count, with_settings=with_settings)


def rename_connection(store: Store, therapist_id: int, connection_id: int, name: str) -> bool:
    """Rename a connection of this therapist; False when there is no such connection.

    Raises :class:`ConnectionNameTaken`.
    """
    with store.session() as session:
        c = _live_connection(session, therapist_id, connection_id)
        if c is None:
            return False
        _check_name_free(session, therapist_id, name, except_id=c.id)
        if c.name != name:
            c.name = name
            c.listing_revision += 1  # listings show the connection's name
        return True


def remove_connection(store: Store, therapist_id: int, connection_id: int, *, now: datetime | None = None) -> bool:
    """Remove a connection of this therapist; False when there is no such connection (or it is gone).

    A soft removal: the connection is no longer synced or listed and its occurrences no longer
    appear in any listing, but the rows stay, because sessions (and the notes and ratings that
    hang off them) point at occurrences and must survive the calendar that produced them. What
    made the connection work (a secret feed URL, OAuth tokens) is forgotten at once: it is needed
    only to sync, and a removed connection never syncs again.
    """
    with store.session() as session:
        c = _live_connection(session, therapist_id, connection_id)
        if c is None:
            return False
        c.removed_at = now or datetime.now(UTC)
        c.credentials = None
        c.cursor = None
        return True


@dataclass(frozen=True)
class OccurrenceView:
    id: int
    connection_id: int
    connection: str
    uid: str
    recurrence_id: str
    provider_id: str | None
    status: Status
    all_day: bool
    start: datetime
    end: datetime
    timezone: str | None
    title: str
    description: str
    location: str
    attendees: tuple[str, ...]
    video_url: str | None


def instant_text(value: datetime, all_day: bool) -> str:
    """An occurrence's start or end as text: UTC ISO 8601 with offset, or the date when all-day."""
    return value.date().isoformat() if all_day else value.astimezone(UTC).isoformat()


def occurrence_record(o: OccurrenceView) -> dict[str, Any]:
    """One occurrence as plain data: the shape ``alliance events --json`` and the API share."""
    return {
        "id": o.id,
        "uid": o.uid,
        "recurrence_id": o.recurrence_id or None,
        "start": instant_text(o.start, o.all_day),
        "end": instant_text(o.end, o.all_day),
        "all_day": o.all_day,
        "timezone": o.timezone,
        "status": o.status.value,
        "title": o.title,
        "location": o.location,
        "video_url": o.video_url,
        "connection": o.connection,
    }


def _listing_query(
    therapist_id: int | None,
    start: datetime | None,
    end: datetime | None,
    include_cancelled: bool,
    occurrence_id: int | None,
) -> Select[*tuple[Any, ...]]:
    # Plain columns, not ORM entities: a listing only reads, and building 100 tracked instances
    # per request was most of the time of GET /api/v1/occurrences (benchmarks/api_occurrences.py).
    query = (
        select(
            Occurrence.id,
            Occurrence.connection_id,
            Occurrence.ical_uid,
            Occurrence.recurrence_id,
            Occurrence.provider_id,
            Occurrence.status,
            Occurrence.all_day,
            Occurrence.start_utc,
            Occurrence.end_utc,
            Occurrence.timezone,
            Occurrence.content,
            Connection.name,
            Connection.therapist_id,
        )
        .join(Connection, Connection.id == Occurrence.connection_id)
        .where(Connection.removed_at.is_(None))
    )
    if occurrence_id is not None:
        query = query.where(Occurrence.id == occurrence_id)
    if therapist_id is not None:
        query = query.where(Connection.therapist_id == therapist_id)
    if start is not None:
        query = query.where(Occurrence.end_utc > start)
    if end is not None:
        query = query.where(Occurrence.start_utc < end)
    if not include_cancelled:
        query = query.where(Occurrence.status != Status.CANCELLED.value)
    return query.order_by(Occurrence.start_utc, Occurrence.id)


def _views(store: Store, session: Session, query: Select[*tuple[Any, ...]]) -> list[OccurrenceView]:
    rows = session.execute(query).all()
    views = []
    decrypt = store.keyring.decrypt
    owners: dict[int, Owner] = {}
    for oid, cid, uid, rid, pid, status, all_day, begins, ends, zone, blob, name, owner_id in rows:
        owner = owners.get(owner_id)
        if owner is None:
            owner = owners[owner_id] = Owner("therapist", owner_id)
        content = parse_content(decrypt(session, owner, blob, content_context_of(cid, uid, rid)))
        views.append(
            OccurrenceView(
                id=oid,
                connection_id=cid,
                connection=name,
                uid=uid,
                recurrence_id=rid,
                provider_id=pid,
                status=Status(status),
                all_day=all_day,
                start=begins,
                end=ends,
                timezone=zone,
                title=content.title,
                description=content.description,
                location=content.location,
                attendees=content.attendees,
                video_url=content.video_url,
            )
        )
    return views


def list_occurrences(
    store: Store,
    *,
    therapist_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    include_cancelled: bool = False,
    occurrence_id: int | None = None,
) -> list[OccurrenceView]:
    """Occurrences overlapping ``[start, end)``, ordered by start; those of removed connections never."""
    query = _listing_query(therapist_id, start, end, include_cancelled, occurrence_id)
    with store.session() as session:
        return _views(store, session, query)


ListingVersion = tuple[tuple[int, int], ...]
"""The (connection id, listing revision) of each live connection of a therapist."""

# Built once: every listing request runs it first (core.store.db.Store.reader).
_LISTING_VERSION = (
    select(Connection.id, Connection.listing_revision)
    .where(Connection.therapist_id == bindparam("therapist_id"), Connection.removed_at.is_(None))
    .order_by(Connection.id)
)


def listing_version(store: Store, therapist_id: int) -> ListingVersion:
    """What a therapist's occurrence listings depend on; it changes whenever one of them may."""
    with store.reader() as connection:
        return read_listing_version(connection, therapist_id)


def read_listing_version(connection: DbConnection, therapist_id: int) -> ListingVersion:
    """:func:`listing_version` on a connection the caller holds (``Store.reader_nowait`` on the event loop)."""
    rows = connection.execute(_LISTING_VERSION, {"therapist_id": therapist_id}).all()
    return tuple((cid, revision) for cid, revision in rows)


def occurrence_listing(
    store: Store,
    therapist_id: int,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    include_cancelled: bool = False,
    unchanged_since: ListingVersion | None = None,
) -> tuple[ListingVersion, list[OccurrenceView] | None]:
    """The therapist's listing with its version, or ``(version, None)`` when it is ``unchanged_since``.

    The version changes with every sync that writes an occurrence, a rename, an added or removed
    connection (core.sync.engine bumps ``listing_revision`` in the transaction of the rows). It is
    read before the rows, so a listing is never paired with a version newer than itself: a cache
    keyed by it may recompute once too often, never serve a listing older than its version.
    """
    version = listing_version(store, therapist_id)
    if version == unchanged_since:
        return version, None
    return version, list_occurrences(
        store, therapist_id=therapist_id, start=start, end=end, include_cancelled=include_cancelled
    )


def get_occurrence(store: Store, therapist_id: int, occurrence_id: int) -> OccurrenceView | None:
    """One occurrence of this therapist (cancelled ones too), or None."""
    found = list_occurrences(store, therapist_id=therapist_id, occurrence_id=occurrence_id, include_cancelled=True)
    return found[0] if found else None


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    old_start: datetime | None
    old_end: datetime | None
    new_start: datetime | None
    new_end: datetime | None
    at: datetime


def occurrence_history(store: Store, occurrence_id: int) -> list[HistoryEntry]:
    """What happened to an occurrence, oldest first (the caller checks whose it is)."""
    with store.session() as session:
        rows = session.scalars(
            select(OccurrenceHistory)
            .where(OccurrenceHistory.occurrence_id == occurrence_id)
            .order_by(OccurrenceHistory.id)
        )
        return [
            HistoryEntry(h.kind, h.old_start_utc, h.old_end_utc, h.new_start_utc, h.new_end_utc, h.at) for h in rows
        ]


def remove_unsynced_connection(store: Store, connection_id: int) -> bool:
    """Delete a connection that never mirrored anything (a failed first sync); True if deleted."""
    with store.session() as session:
        has_rows = session.scalar(select(Occurrence.id).where(Occurrence.connection_id == connection_id).limit(1))
        if has_rows is not None:
            return False
        connection = session.get(Connection, connection_id)
        if connection is None:
            return False
        session.delete(connection)
        return True


def read_content(store: Store, session: Session, occurrence: Occurrence) -> OccurrenceContent:
    """Decrypt the mirrored content (title, description, location, attendees, video link) of one row."""
    therapist_id = session.scalar(select(Connection.therapist_id).where(Connection.id == occurrence.connection_id))
    if therapist_id is None:
        raise LookupError(f"occurrence {occurrence.id} has no connection")
    cipher = store.keyring.cipher_for_blob(session, Owner("therapist", therapist_id), occurrence.content)
    key = OccurrenceKey(occurrence.ical_uid, occurrence.recurrence_id)
    return unseal(cipher, occurrence.connection_id, key, occurrence.content)
