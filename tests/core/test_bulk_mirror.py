"""A large first mirror (the bulk path: COPY on PostgreSQL) stores exactly what a small one does."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from core.mirror import add_connection, ensure_therapist, list_occurrences, occurrence_history
from core.store import OutboxEvent, Store
from core.store.bulk import COPY_THRESHOLD
from core.sync import OccurrenceKey, RemoteOccurrence, Status, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider


def test_a_large_first_mirror_round_trips_every_field(store: Store) -> None:
    count = COPY_THRESHOLD * 2 + 7
    base = datetime(2026, 12, 1, 9, tzinfo=UTC)
    cal = MemoryCalendar()
    for i in range(count):
        start = base + timedelta(hours=i)
        cal.put(
            RemoteOccurrence(
                key=OccurrenceKey(f"bulk-{i}@test", "" if i % 2 else start.isoformat()),
                start=start,
                end=start + timedelta(minutes=50),
                status=Status.TENTATIVE if i % 3 == 0 else Status.CONFIRMED,
                timezone="Europe/Madrid" if i % 5 else None,
                provider_id=f"p{i}" if i % 4 else None,
                title=f"Session {i} ñ ü",
                location="https://meet.google.com/abc-defg-hij" if i % 7 == 0 else "",
            )
        )
    connection = add_connection(store, ensure_therapist(store, "bulk@test"), "memory", "m", {})
    report = sync_connection(store, connection, MemoryProvider(cal, page_size=count))
    assert report.created == count

    mirrored = {o.uid: o for o in list_occurrences(store)}
    assert len(mirrored) == count
    for i in (0, 1, 3, 7, count - 1):
        source = cal.items[next(k for k in cal.items if k.ical_uid == f"bulk-{i}@test")]
        got = mirrored[f"bulk-{i}@test"]
        assert (got.start, got.end, got.status, got.timezone, got.provider_id, got.title) == (
            source.start,
            source.end,
            source.status,
            source.timezone,
            source.provider_id,
            source.title,
        )
        assert got.recurrence_id == source.key.recurrence_id
        assert (got.video_url is not None) == (i % 7 == 0)
        assert [h.kind for h in occurrence_history(store, got.id)] == ["created"]
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == count
        payload = session.scalars(select(OutboxEvent.payload).limit(1)).one()
        assert set(payload) == {"old_start", "old_end", "start", "end"}
    assert sync_connection(store, connection, MemoryProvider(cal)).changes == 0
