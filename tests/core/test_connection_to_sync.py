"""What a sync reads of its connection: settings and time zone together, no occurrence count, no cursor."""

from __future__ import annotations

from sqlalchemy import event

from core.mirror import add_connection, connection_to_sync, ensure_therapist, get_connection, remove_connection
from core.store import Store


def test_a_sync_reads_its_connection_with_the_time_zone_and_counts_nothing(store: Store) -> None:
    therapist = ensure_therapist(store, "ana@example.org", timezone="Europe/Madrid")
    connection = add_connection(store, therapist, "memory", "work", {"calendar": "work"})
    statements: list[str] = []

    def seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(store.engine, "before_cursor_execute", seen)
    try:
        read = connection_to_sync(store, connection)
    finally:
        event.remove(store.engine, "before_cursor_execute", seen)

    assert read is not None
    view, timezone = read
    assert (view.id, view.therapist_id, view.settings, timezone) == (
        connection,
        therapist,
        {"calendar": "work"},
        "Europe/Madrid",
    )
    assert view.occurrences is None  # not counted: the listings count, a sync does not
    assert sum("FROM connections" in s for s in statements) == 1  # the time zone comes with it
    assert not any("count(" in s.lower() for s in statements)
    # Nor the cursor (an Outlook connection's is ~1.5 MB at 10,000 events): the sync reads it with
    # its lease, and reading it here too doubled what a sync fetched (benchmarks/README.md).
    assert not any("connections.cursor" in s for s in statements)
    counted = get_connection(store, therapist, connection)
    assert counted is not None and counted.occurrences == 0

    remove_connection(store, therapist, connection)
    assert connection_to_sync(store, connection) is None
