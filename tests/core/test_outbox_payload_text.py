"""The first mirror's pre-encoded values store exactly what the plain values store.

The sync engine hands ``core.store.bulk`` its outbox payloads as JSON text and the UTC ISO text of
its instants: consumers read the payloads back through the JSON column, and the occurrences'
instants are compared and ordered as stored text on SQLite, so not a byte may differ from what
SQLAlchemy stores for the plain dict and the plain datetime, on either database.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Table, insert, select

from core.store import OutboxEvent, Store
from core.store.bulk import COPY_THRESHOLD, EncodedJson, _sqlite_text_from_iso, insert_tuples
from core.store.models import UtcDateTime
from core.sync.engine import _created_payload, _payload

OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]
NAMES = ("event_id", "kind", "therapist_id", "connection_id", "occurrence_id", "payload", "created_at")
instants = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=2)), timezone(timedelta(hours=-9, minutes=-30))]),
)
iso = instants.map(lambda moment: moment.astimezone(UTC).isoformat())
odd_text = st.text(max_size=12)  # never what the engine passes, still encoded as json.dumps would


@given(old_start=st.none() | iso, old_end=st.none() | iso, start=st.none() | iso | odd_text, end=st.none() | iso)
def test_the_payload_text_is_what_json_dumps_writes(
    old_start: str | None, old_end: str | None, start: str | None, end: str | None
) -> None:
    expected = json.dumps({"old_start": old_start, "old_end": old_end, "start": start, "end": end})
    assert _payload(old_start, old_end, start, end) == expected


@given(start=iso, end=iso)
def test_a_created_occurrences_payload_is_what_json_dumps_writes(start: str, end: str) -> None:
    expected = json.dumps({"old_start": None, "old_end": None, "start": start, "end": end})
    assert _created_payload(start, end) == expected


@given(moment=instants)
def test_sqlite_text_cut_from_the_iso_text_is_what_the_column_stores(moment: datetime) -> None:
    from sqlalchemy.dialects import sqlite

    dialect = sqlite.dialect()
    # What SQLAlchemy itself writes for the column (the type's bind processor and its impl's).
    process = UtcDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None
    assert _sqlite_text_from_iso(moment.astimezone(UTC).isoformat()) == process(moment)


def test_texts_of_another_shape_are_not_cut() -> None:
    assert _sqlite_text_from_iso("2026-05-04T08:15:30+02:00") is None
    assert _sqlite_text_from_iso("2026-05-04 08:15:30+00:00") is None
    assert _sqlite_text_from_iso("2026-05-04T08:15+00:00") is None


def _rows(count: int, *, encoded: bool) -> list[tuple[Any, ...]]:
    base = datetime(2026, 5, 4, 8, 15, 30, 123456, tzinfo=UTC)
    rows = []
    for i in range(count):
        start = (base + timedelta(hours=i, microseconds=0 if i % 2 else 1)).isoformat()
        values = {"old_start": None if i % 3 else start, "old_end": None, "start": start, "end": 'ü"\\' * (i % 2)}
        payload = EncodedJson(json.dumps(values)) if encoded else values
        rows.append((str(uuid.uuid4()), "occurrence.created", 1, 2, i, payload, base))
    return rows


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 5])
def test_encoded_payloads_are_stored_as_the_same_dicts(store: Store, count: int) -> None:
    # Small batches (executemany on both databases) and large ones (COPY on PostgreSQL).
    with store.session() as session:
        session.execute(insert(OUTBOX), [dict(zip(NAMES, row, strict=True)) for row in _rows(count, encoded=False)])
    with store.session() as session:
        insert_tuples(session, OUTBOX, NAMES, _rows(count, encoded=True))
    with store.engine.connect() as connection:
        raw = [r[0] for r in connection.exec_driver_sql("SELECT payload FROM outbox ORDER BY id")]
    assert len(raw) == 2 * count
    assert raw[count:] == raw[:count]
    with store.session() as session:
        read = session.scalars(select(OutboxEvent.payload).order_by(OutboxEvent.id)).all()
    assert read[count:] == read[:count] == [row[5] for row in _rows(count, encoded=False)]


@pytest.mark.parametrize("count", [3, COPY_THRESHOLD + 5])
def test_instants_with_their_iso_text_are_stored_as_without(store: Store, count: int) -> None:
    base = datetime(2026, 5, 4, 8, 15, 30, tzinfo=UTC)
    moments = [base + timedelta(minutes=15 * i, microseconds=i % 3) for i in range(count)]
    # One given with another offset: the memo and the ISO texts must not confuse equal instants.
    moments[0] = moments[0].astimezone(timezone(timedelta(hours=2)))
    rows = [(str(uuid.uuid4()), "occurrence.created", 1, 2, i, {}, m) for i, m in enumerate(moments)]
    with store.session() as session:
        insert_tuples(session, OUTBOX, NAMES, rows)
    texts = {m: m.astimezone(UTC).isoformat() for m in moments}
    with store.session() as session:
        insert_tuples(session, OUTBOX, NAMES, [(str(uuid.uuid4()), *r[1:]) for r in rows], iso_texts=texts)
    with store.engine.connect() as connection:
        raw = [r[0] for r in connection.exec_driver_sql("SELECT created_at FROM outbox ORDER BY id")]
    assert raw[count:] == raw[:count]
    with store.session() as session:
        read = session.scalars(select(OutboxEvent.created_at).order_by(OutboxEvent.id)).all()
    assert read[count:] == read[:count] == moments
