"""Rows given as tuples (the sync engine's form) are stored exactly as the same rows given as dicts."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import Table, func, select

from core.store import OutboxEvent, Store
from core.store.bulk import COPY_THRESHOLD, insert_rows, insert_tuples

OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
NAMES = ("event_id", "kind", "therapist_id", "connection_id", "occurrence_id", "payload", "created_at")
NOW = datetime(2026, 5, 4, 8, 15, 30, 123456, tzinfo=UTC)
MADRID = timezone(timedelta(hours=2))


def _tuples(count: int) -> list[tuple[Any, ...]]:
    # Instants repeat across rows and come with another offset: the shared memo must not mix them up.
    return [
        (
            str(uuid.uuid4()),
            "occurrence.created",
            1,
            2,
            i if i % 3 else None,
            {"start": f"2026-05-{1 + i % 28:02d}T09:00:00+00:00", "old_start": None, "ñ": "ü"},
            NOW + timedelta(seconds=i % 4) if i % 2 else (NOW + timedelta(seconds=i % 4)).astimezone(MADRID),
        )
        for i in range(count)
    ]


def _stored(store: Store) -> list[tuple[Any, ...]]:
    with store.engine.connect() as connection:
        return [
            tuple(r)
            for r in connection.exec_driver_sql(
                "SELECT kind, therapist_id, connection_id, occurrence_id, payload, created_at FROM outbox ORDER BY id"
            )
        ]


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 5])
def test_tuples_are_stored_as_the_same_rows_given_as_dicts(store: Store, count: int) -> None:
    rows = _tuples(count)
    with store.session() as session:
        insert_rows(session, OUTBOX, [dict(zip(NAMES, row, strict=True)) for row in rows])
    instants: dict[Any, Any] = {}
    with store.session() as session:
        insert_tuples(session, OUTBOX, NAMES, [(str(uuid.uuid4()), *row[1:]) for row in rows], instants=instants)
    stored = _stored(store)
    assert len(stored) == 2 * count
    assert stored[count:] == stored[:count]
    with store.session() as session:
        read = session.scalars(select(OutboxEvent.created_at).order_by(OutboxEvent.id).offset(count)).all()
    assert read == [row[6] for row in rows]


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 1])
def test_tuples_of_the_wrong_width_are_refused_and_nothing_is_written(store: Store, count: int) -> None:
    short = _tuples(count)
    short[-1] = short[-1][:-1]
    with pytest.raises(ValueError, match="one value per name"), store.session() as session:
        insert_tuples(session, OUTBOX, NAMES, short)
    with pytest.raises(ValueError, match="one value per name"), store.session() as session:
        insert_tuples(session, OUTBOX, NAMES[:-1], _tuples(count))
    with pytest.raises(ValueError, match="no column 'colour'"), store.session() as session:
        insert_tuples(session, OUTBOX, (*NAMES[:-1], "colour"), _tuples(count))
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
