"""Read and manage the mirror: therapists, connections, occurrences (no provider knowledge)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.crypto import Owner
from core.store.db import Store
from core.store.models import Connection, Occurrence, OccurrenceHistory, Therapist
from core.sync.content import OccurrenceContent, content_context, parse_content, unseal
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


def add_connection(store: Store, therapist_id: int, provider: str, name: str, settings: dict[str, Any]) -> int:
    """Create a connection and return its id; names are unique per therapist.

    ``settings`` is what the provider needs to connect; it is stored encrypted (a feed URL can
    embed a secret), bound to this connection.
    """
    with store.session() as session:
        clash = session.scalar(
            select(Connection.id).where(Connection.therapist_id == therapist_id, Connection.name == name)
        )
        if clash is not None:
            raise ValueError(f"a connection named {name!r} already exists")
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
    occurrences: int


def list_connections(store: Store, therapist_id: int | None = None) -> list[ConnectionView]:
    with store.session() as session:
        counts = dict(
            session.execute(
                select(Occurrence.connection_id, func.count())
                .where(Occurrence.status != Status.CANCELLED.value)
                .group_by(Occurrence.connection_id)
            ).all()
        )
        query = select(Connection).order_by(Connection.id)
        if therapist_id is not None:
            query = query.where(Connection.therapist_id == therapist_id)
        return [
            ConnectionView(
                id=c.id,
                therapist_id=c.therapist_id,
                provider=c.provider,
                name=c.name,
                settings=_open_config(store, session, c),
                health=c.health,
                last_error=c.last_error,
                last_sync_at=c.last_sync_at,
                last_success_at=c.last_success_at,
                last_result=c.last_result,
                occurrences=counts.get(c.id, 0),
            )
            for c in session.scalars(query)
        ]


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


def list_occurrences(
    store: Store,
    *,
    therapist_id: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    include_cancelled: bool = False,
) -> list[OccurrenceView]:
    """Occurrences overlapping ``[start, end)``, ordered by start."""
    query = select(Occurrence, Connection.name, Connection.therapist_id).join(
        Connection, Connection.id == Occurrence.connection_id
    )
    if therapist_id is not None:
        query = query.where(Connection.therapist_id == therapist_id)
    if start is not None:
        query = query.where(Occurrence.end_utc > start)
    if end is not None:
        query = query.where(Occurrence.start_utc < end)
    if not include_cancelled:
        query = query.where(Occurrence.status != Status.CANCELLED.value)
    query = query.order_by(Occurrence.start_utc, Occurrence.id)
    with store.session() as session:
        rows = session.execute(query).all()
        views = []
        keyring = store.keyring
        owners: dict[int, Owner] = {}
        for o, name, owner_id in rows:
            owner = owners.setdefault(owner_id, Owner("therapist", owner_id))
            context = content_context(o.connection_id, OccurrenceKey(o.ical_uid, o.recurrence_id))
            content = parse_content(keyring.decrypt(session, owner, o.content, context))
            views.append(_occurrence_view(o, name, content))
        return views


def _occurrence_view(o: Occurrence, name: str, content: OccurrenceContent) -> OccurrenceView:
    return OccurrenceView(
        id=o.id,
        connection_id=o.connection_id,
        connection=name,
        uid=o.ical_uid,
        recurrence_id=o.recurrence_id,
        provider_id=o.provider_id,
        status=Status(o.status),
        all_day=o.all_day,
        start=o.start_utc,
        end=o.end_utc,
        timezone=o.timezone,
        title=content.title,
        description=content.description,
        location=content.location,
        attendees=content.attendees,
        video_url=content.video_url,
    )


@dataclass(frozen=True)
class HistoryEntry:
    kind: str
    old_start: datetime | None
    old_end: datetime | None
    new_start: datetime | None
    new_end: datetime | None
    at: datetime


def occurrence_history(store: Store, occurrence_id: int) -> list[HistoryEntry]:
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
