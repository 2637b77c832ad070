"""Store.one_statement: a statement that is its own transaction, without BEGIN and COMMIT round trips."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import bindparam, select, update

from core.mirror import ensure_therapist
from core.store import Store
from core.store.db import make_engine
from core.store.models import Therapist
from tests.postgres_admin import round_trips

_RENAME = (
    update(Therapist)
    .where(Therapist.id == bindparam("therapist_pk"))
    .values(email=bindparam("email"))
    .returning(Therapist.email)
)
_EMAIL_OF = select(Therapist.email).where(Therapist.id == bindparam("therapist_pk"))


def test_a_statement_on_its_own_is_committed_as_it_ends(store: Store) -> None:
    therapist_id = ensure_therapist(store, "before@example.org")
    with store.one_statement() as statement:
        renamed = statement.execute(_RENAME, {"therapist_pk": therapist_id, "email": "after@example.org"}).scalar()
        # Another connection sees it before the block ends: nothing is held open around it.
        seen = store.read_rows(_EMAIL_OF, {"therapist_pk": therapist_id})
    assert renamed == "after@example.org"
    assert [tuple(row) for row in seen] == [("after@example.org",)]
    # The connection went back to the pool in its usual mode: a session's transaction still rolls back.
    with pytest.raises(RuntimeError), store.session() as session:
        session.get_one(Therapist, therapist_id).email = "never@example.org"
        session.flush()
        raise RuntimeError("abandon the transaction")
    assert [tuple(row) for row in store.read_rows(_EMAIL_OF, {"therapist_pk": therapist_id})] == [
        ("after@example.org",)
    ]


@pytest.mark.postgres
def test_on_postgresql_a_statement_on_its_own_is_one_round_trip(clean_postgres_url: str, tmp_path: Path) -> None:
    pg_store = Store(make_engine(clean_postgres_url))
    trace_file = tmp_path / "libpq.trace"
    try:
        therapist_id = ensure_therapist(pg_store, "trips@example.org")
        with trace_file.open("w") as sink:
            with pg_store.one_statement() as statement:
                driver: Any = statement.connection.driver_connection
                driver.pgconn.trace(sink.fileno())  # from here on: the statement, then the connection's return
                statement.execute(_RENAME, {"therapist_pk": therapist_id, "email": "trips2@example.org"}).scalar()
            driver.pgconn.untrace()
    finally:
        pg_store.close()
    assert round_trips(trace_file.read_text()) == 1  # the UPDATE alone: no BEGIN, no COMMIT
