"""Pooled PostgreSQL connections: one dropped by the server while idle is replaced unseen, and a
connection in steady use is not pinged before each transaction (core.store.liveness)."""

from __future__ import annotations

import time

import psycopg
import pytest
from sqlalchemy import event, text

from core.store.db import make_engine
from core.store.liveness import IDLE_PING_SECONDS
from tests.postgres_admin import terminate_backend

pytestmark = pytest.mark.postgres


def _backend_pid(engine) -> int:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())


def test_a_connection_the_server_dropped_while_idle_is_replaced_without_an_error(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    try:
        first = _backend_pid(engine)
        terminate_backend(postgres_url, first)  # what a server restart or an idle-socket firewall does
        time.sleep(IDLE_PING_SECONDS + 0.2)
        with engine.connect() as conn:  # the pooled connection is dead: checked, replaced, used
            assert conn.execute(text("SELECT 41 + 1")).scalar_one() == 42
        assert _backend_pid(engine) != first
    finally:
        engine.dispose()


def test_a_connection_in_steady_use_sends_no_ping_before_each_transaction(postgres_url: str) -> None:
    engine = make_engine(postgres_url)
    sent: list[str] = []

    class WatchedCursor(psycopg.Cursor):  # type: ignore[type-arg]
        def execute(self, query, *args, **kwargs):  # type: ignore[no-untyped-def,override]
            sent.append(str(query))
            return super().execute(query, *args, **kwargs)

    def watch(dbapi_connection, _record, _proxy) -> None:  # type: ignore[no-untyped-def]
        # Every statement on the driver's connection, SQLAlchemy's own ping included (it runs
        # below SQLAlchemy's statement events, on a cursor of its own).
        dbapi_connection.cursor_factory = WatchedCursor

    event.listen(engine, "checkout", watch, insert=True)  # before any liveness check runs
    try:
        for _ in range(5):
            with engine.begin() as conn:
                assert conn.execute(text("SELECT 'work'")).scalar_one() == "work"
        assert sum("work" in q for q in sent) == 5  # the watch sees the statements
        assert [q for q in sent if "work" not in q] == []  # and nothing else: no ping per checkout
    finally:
        engine.dispose()
