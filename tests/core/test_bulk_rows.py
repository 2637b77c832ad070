"""core.store.bulk stores exactly what SQLAlchemy's own insert stores, or nothing at all."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, func, insert, select, text

from core.mirror import add_connection, ensure_therapist
from core.store import OutboxEvent, Store
from core.store.bulk import COPY_THRESHOLD, insert_rows
from core.store.models import Occurrence, OccurrenceHistory

OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
OCCURRENCES: Table = Occurrence.__table__  # type: ignore[assignment]
NOW = datetime(2026, 5, 4, 8, 15, 30, 123456, tzinfo=UTC)
MADRID_SUMMER = timezone(timedelta(hours=2))


def _outbox_rows(count: int) -> list[dict[str, Any]]:
    return [
        {
            "event_id": str(uuid.uuid4()),
            "kind": "occurrence.created",
            "therapist_id": 1,
            "connection_id": 2,
            "occurrence_id": i if i % 3 else None,
            "payload": {"start": f"2026-05-{1 + i % 28:02d}T09:00:00+00:00", "old_start": None, "n": i, "ñ": "ü"},
            # Another offset and sub-second parts: stored as the same UTC instant either way.
            "created_at": (NOW + timedelta(seconds=i)).astimezone(MADRID_SUMMER)
            if i % 2
            else NOW.replace(microsecond=0)
            if i % 4
            else NOW,
            "processed_at": None,
        }
        for i in range(count)
    ]


def _raw(store: Store, table: str, columns: str) -> list[tuple[Any, ...]]:
    # What the database holds, read by the driver itself (no SQLAlchemy type processing).
    with store.engine.connect() as connection:
        return [tuple(r) for r in connection.exec_driver_sql(f"SELECT {columns} FROM {table} ORDER BY id")]


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 5])
def test_bulk_outbox_rows_are_stored_as_sqlalchemy_stores_them(store: Store, count: int) -> None:
    rows = _outbox_rows(count)
    with store.session() as session:
        session.execute(insert(OUTBOX), rows)
    with store.session() as session:
        insert_rows(session, OUTBOX, [{**row, "event_id": str(uuid.uuid4())} for row in rows])
    stored = _raw(
        store, "outbox", "kind, therapist_id, connection_id, occurrence_id, payload, created_at, processed_at"
    )
    assert len(stored) == 2 * count
    assert stored[count:] == stored[:count]
    with store.session() as session:
        read = session.scalars(select(OutboxEvent).order_by(OutboxEvent.id)).all()
    assert [(e.payload, e.created_at, e.processed_at) for e in read[count:]] == [
        (r["payload"], r["created_at"], None) for r in rows
    ]


@pytest.mark.parametrize("count", [2, COPY_THRESHOLD])
def test_bulk_occurrence_rows_are_stored_as_sqlalchemy_stores_them(store: Store, count: int) -> None:
    connection = add_connection(store, ensure_therapist(store, "bulk-rows@test"), "memory", "m", {})

    def rows(prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "connection_id": connection,
                "ical_uid": f"{prefix}-{i}@test",
                "recurrence_id": "" if i % 2 else "2026-05-04T08:00:00+00:00",
                "provider_id": None if i % 4 == 0 else f"p{i}",
                "status": "confirmed",
                "all_day": i % 5 == 0,
                "start_utc": NOW + timedelta(hours=i),
                "end_utc": NOW + timedelta(hours=i, minutes=50),
                "timezone": None if i % 3 == 0 else "Europe/Madrid",
                "content": bytes([i % 256]) * 40,
                "content_hash": f"{i:064x}",
                "created_at": NOW,
                "updated_at": NOW,
            }
            for i in range(count)
        ]

    with store.session() as session:
        session.execute(insert(OCCURRENCES), rows("orm"))
    with store.session() as session:
        insert_rows(session, OCCURRENCES, rows("bulk"))
    columns = (
        "recurrence_id, provider_id, status, all_day, start_utc, end_utc, timezone, content, content_hash, "
        "created_at, updated_at"
    )
    stored = [
        tuple(bytes(v) if isinstance(v, memoryview) else v for v in r) for r in _raw(store, "occurrences", columns)
    ]
    assert len(stored) == 2 * count
    assert stored[count:] == stored[:count]


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 1])
def test_bad_rows_are_refused_and_nothing_is_written(store: Store, count: int) -> None:
    mixed = _outbox_rows(count)
    del mixed[-1]["processed_at"]
    with pytest.raises(ValueError, match="same keys"), store.session() as session:
        insert_rows(session, OUTBOX, mixed)

    naive = _outbox_rows(count)
    naive[-1]["created_at"] = datetime(2026, 5, 4, 8, 0)
    with pytest.raises(ValueError, match="naive datetime"), store.session() as session:
        insert_rows(session, OUTBOX, naive)

    unknown = [{**row, "colour": "red"} for row in _outbox_rows(count)]
    with pytest.raises(ValueError, match="no column 'colour'"), store.session() as session:
        insert_rows(session, OUTBOX, unknown)

    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
        assert session.execute(text("SELECT 1")).scalar() == 1


def test_a_mirror_syncs_when_an_id_was_set_above_the_sequence(store: Store) -> None:
    # A restore or a manual fix can leave a row whose id is above what PostgreSQL's sequence hands
    # out next: the new rows' ids are then below it, and must still be found.
    from core.sync import OccurrenceKey, RemoteOccurrence, sync_connection
    from integrations.base import MemoryCalendar, MemoryProvider

    therapist = ensure_therapist(store, "ids@test")
    other = add_connection(store, therapist, "memory", "other", {})
    with store.session() as session:
        session.execute(
            insert(OCCURRENCES).values(
                id=1_000_000,
                connection_id=other,
                ical_uid="by-hand@test",
                recurrence_id="",
                status="confirmed",
                all_day=False,
                start_utc=NOW,
                end_utc=NOW,
                content=b"x",
                content_hash="0" * 64,
                created_at=NOW,
                updated_at=NOW,
            )
        )
    cal = MemoryCalendar()
    for i in range(5):
        cal.put(RemoteOccurrence(key=OccurrenceKey(f"s{i}@test"), start=NOW, end=NOW + timedelta(hours=1)))
    connection = add_connection(store, therapist, "memory", "mine", {})
    assert sync_connection(store, connection, MemoryProvider(cal)).created == 5
    with store.session() as session:
        ids = session.scalars(select(Occurrence.id).where(Occurrence.connection_id == connection)).all()
        history = session.scalars(select(OccurrenceHistory.occurrence_id)).all()
    assert sorted(history) == sorted(ids) and len(ids) == 5
