"""Store.prompt_write: the short transaction a webhook's ack commits before it answers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from core.store import Store
from core.store import db as store_db


def _path(store: Store) -> Path:
    return Path(str(store.engine.url.database))


def _make_table(store: Store) -> None:
    # Not one of the schema's tables (the PostgreSQL fixture keeps the database between tests).
    with store.prompt_write() as conn:
        conn.execute(text("DROP TABLE IF EXISTS acked"))
        conn.execute(text("CREATE TABLE acked (x INTEGER)"))


def _values(store: Store) -> list[int]:
    with store.reader() as conn:
        return sorted(conn.execute(text("SELECT x FROM acked")).scalars())


def test_it_waits_for_another_writer_instead_of_failing_and_commits(store: Store) -> None:
    _make_table(store)
    if store.engine.dialect.name != "sqlite":
        with store.prompt_write() as conn:
            conn.execute(text("INSERT INTO acked VALUES (1)"))
        assert _values(store) == [1]
        return
    # The worker (another process in production) holds SQLite's write lock for a while.
    other = sqlite3.connect(_path(store), isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO acked VALUES (1)")
    holding = threading.Timer(0.3, lambda: other.execute("COMMIT"))
    holding.start()
    try:
        with store.prompt_write() as conn:
            conn.execute(text("INSERT INTO acked VALUES (2)"))
    finally:
        holding.join()
        other.close()
    assert _values(store) == [1, 2]


def test_an_exception_rolls_back_and_the_next_write_works(store: Store) -> None:
    _make_table(store)
    with pytest.raises(KeyError), store.prompt_write() as conn:
        conn.execute(text("INSERT INTO acked VALUES (1)"))
        raise KeyError("the batch failed")
    with store.prompt_write() as conn:
        conn.execute(text("INSERT INTO acked VALUES (2)"))
    assert _values(store) == [2]
    # Nothing is left open on the writer's connection: another writer gets the lock at once.
    if store.engine.dialect.name == "sqlite":
        other = sqlite3.connect(_path(store), isolation_level=None, timeout=0)
        other.execute("BEGIN IMMEDIATE")
        other.execute("ROLLBACK")
        other.close()


def test_a_lock_never_released_fails_after_the_timeout(sqlite_store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    _make_table(sqlite_store)
    monkeypatch.setattr(store_db, "PROMPT_WRITE_TIMEOUT", 0.2)
    other = sqlite3.connect(_path(sqlite_store), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), sqlite_store.prompt_write() as conn:
            conn.execute(text("INSERT INTO acked VALUES (1)"))
    finally:
        other.execute("ROLLBACK")
        other.close()
    with sqlite_store.prompt_write() as conn:  # and it recovers once the lock is free
        conn.execute(text("INSERT INTO acked VALUES (2)"))
    assert _values(sqlite_store) == [2]
