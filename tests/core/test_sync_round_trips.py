"""What a sync that finds nothing new (most of a push storm's syncs) costs PostgreSQL: two round trips,
the lease and the outcome, each a statement on its own (core.sync.engine, Store.one_statement)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from core.mirror import add_connection, connection_to_sync, ensure_therapist
from core.store import Connection, Store
from core.store.db import make_engine
from core.sync import ChangePage, sync_connection
from tests.conftest import test_keyring
from tests.postgres_admin import round_trips

pytestmark = pytest.mark.postgres


class NothingNew:
    """A source whose incremental listing is one empty page with a new cursor."""

    def __init__(self, cursor: str) -> None:
        self.cursor = cursor

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        yield ChangePage(next_cursor=self.cursor)


def _round_trips(store: Store, trace_file: Path, work: Any) -> int:
    """Round trips on every connection ``work`` checks out from the store's pool."""
    traced: list[Any] = []
    with trace_file.open("w") as sink:

        def trace(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
            dbapi_connection.pgconn.trace(sink.fileno())
            traced.append(dbapi_connection)

        event.listen(store.engine, "checkout", trace)
        try:
            work()
        finally:
            event.remove(store.engine, "checkout", trace)
            for dbapi_connection in traced:
                dbapi_connection.pgconn.untrace()
    return round_trips(trace_file.read_text())


def test_a_sync_that_finds_nothing_new_is_two_round_trips(clean_postgres_url: str, tmp_path: Path) -> None:
    store = Store(make_engine(clean_postgres_url), keyring=test_keyring())
    try:
        therapist = ensure_therapist(store, "ana@example.org")
        connection = add_connection(store, therapist, "memory", "work", {})
        sync_connection(store, connection, NothingNew("first"))

        # The connection's read for the sync job, then the sync: one statement each for the read,
        # the lease, and the outcome (cursor, last result, lease released); no BEGIN, no COMMIT.
        assert _round_trips(store, tmp_path / "read.trace", lambda: connection_to_sync(store, connection)) == 1
        reports: list[Any] = []

        def sync() -> None:
            reports.append(sync_connection(store, connection, NothingNew("2nd")))

        assert _round_trips(store, tmp_path / "sync.trace", sync) == 2
        assert reports[0].pages == 1
        with store.session() as session:
            row = session.get_one(Connection, connection)
            assert (row.cursor, row.lock_owner) == ("2nd", None)
    finally:
        store.close()
