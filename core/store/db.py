"""Database engine, migrations and sessions.

No module-level engine: callers build a :class:`Store` from a URL and pass it down.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine, Row
from sqlalchemy.exc import OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.sql import Executable

from core.store.liveness import ping_idle_connections

if TYPE_CHECKING:
    from core.crypto.keyring import Keyring

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Keep as many SQLite connections as the web server runs requests at once (uvicorn's thread pool
# runs up to 40): past the default 5, every extra connection was opened, given its pragmas and
# closed again per request. An idle SQLite connection costs little memory.
SQLITE_POOL_SIZE = 16
SQLITE_MAX_OVERFLOW = 32


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the web process) work while a sync writes; busy_timeout makes a second
    # writer wait instead of failing at once with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # Checkpoint (copy the log into the database, with its fsyncs) once the log holds 4,000 pages
    # (16 MB) instead of SQLite's 1,000: a first mirror of 10,000 events writes ~3,000 pages, and
    # at 1,000 the commits of its pages took turns checkpointing (~15-25 ms each, the last page's
    # among them). SQLite's documented trade (sqlite.org/wal.html, "Performance Considerations"):
    # fewer checkpoints for bulk writes against a somewhat longer log for readers to look through.
    cursor.execute("PRAGMA wal_autocheckpoint=4000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the settings Alliance relies on."""
    if url.startswith("sqlite"):
        engine = create_engine(url, pool_size=SQLITE_POOL_SIZE, max_overflow=SQLITE_MAX_OVERFLOW)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url)
    ping_idle_connections(engine)  # instead of pool_pre_ping: one round trip less per transaction
    return engine


def _loop_reader_engine(engine: Engine) -> Engine | None:
    """A one-connection engine on the same SQLite file whose checkout never waits (see Store.reader_nowait)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") or "mode=memory" in str(engine.url):
        return None  # an in-memory database is private to its connection: another would see nothing
    # pool_timeout=0: with its one connection in use, a checkout raises at once instead of waiting.
    loop_engine = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=0)
    event.listen(loop_engine, "connect", _sqlite_pragmas)
    return loop_engine


# How long a prompt writer waits for SQLite's write lock in all, and how often it asks (see
# Store.prompt_write). The connection's own busy handler would wait as long, but sleeps in steps that
# grow to 100 ms (1, 2, 5, 10, 15, 20, 25 ... ms), so a short wait often ends tens of ms after the
# lock was free, or misses a free moment between another writer's transactions altogether.
PROMPT_WRITE_TIMEOUT = 30.0
PROMPT_WRITE_POLL = 0.0005


def _prompt_writer_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    # Transactions are begun explicitly (BEGIN IMMEDIATE), and the lock is waited for by
    # Store.prompt_write, not by the busy handler.
    dbapi_connection.isolation_level = None
    dbapi_connection.execute("PRAGMA busy_timeout=0")


def _prompt_writer_engine(engine: Engine) -> Engine | None:
    """A one-connection engine on the same SQLite file for Store.prompt_write (None: not SQLite on a file)."""
    database = engine.url.database or ""
    if engine.dialect.name != "sqlite" or database in ("", ":memory:") or "mode=memory" in str(engine.url):
        return None
    writer = create_engine(engine.url, pool_size=1, max_overflow=0, pool_timeout=PROMPT_WRITE_TIMEOUT)
    event.listen(writer, "connect", _prompt_writer_pragmas)
    return writer


def _begin_immediate(connection: Connection) -> None:
    # On the driver's connection: a refused attempt costs ~2 us there against ~40 us through
    # SQLAlchemy's error handling, CPU (and GIL) taken from the very writer being waited for when the
    # worker runs in the same process.
    driver = connection.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    deadline = time.monotonic() + PROMPT_WRITE_TIMEOUT
    while True:
        try:
            driver.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise OperationalError("BEGIN IMMEDIATE", None, exc) from exc
        time.sleep(PROMPT_WRITE_POLL)


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine) -> None:
    """Apply every pending migration (idempotent)."""
    command.upgrade(alembic_config(engine), "heads")


@lru_cache(maxsize=1)
def _script_heads() -> frozenset[str]:
    # The migration scripts ship with the code and do not change while it runs; /readyz asks on
    # every probe, so read them from disk once.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def pending_migrations(engine: Engine) -> bool:
    """True when the database is behind the newest migration."""
    with engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current != _script_heads()


class Store:
    """The database handle passed to core services."""

    def __init__(self, engine: Engine, keyring: Keyring | None = None) -> None:
        self.engine = engine
        self._keyring = keyring
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # An embedded file answers a small indexed read in microseconds and never over a network:
        # hot paths may read it without leaving the event loop (see portal/api_mirror.py).
        self.reads_are_local = engine.dialect.name == "sqlite"
        # The event loop's own connection, apart from the pool the thread pool's requests share:
        # when those are all checked out, the loop must not queue behind them (reader_nowait).
        self._loop_engine = _loop_reader_engine(engine) if self.reads_are_local else None
        self._prompt_engine = _prompt_writer_engine(engine) if self.reads_are_local else None

    @classmethod
    def open(cls, url: str, *, migrate: bool = True, keyring: Keyring | None = None) -> Store:
        """Open ``url``, apply migrations and, given a keyring, check it matches the data."""
        engine = make_engine(url)
        if migrate:
            upgrade(engine)
        store = cls(engine, keyring)
        if keyring is not None:
            with store.session() as session:
                keyring.verify(session)
        return store

    @property
    def keyring(self) -> Keyring:
        """The keyring that encrypts secrets and mirrored content; a store without one cannot write them."""
        if self._keyring is None:
            raise RuntimeError("this store was opened without a keyring")
        return self._keyring

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session whose transaction commits on success and rolls back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def one_statement(self) -> Iterator[Connection]:
        """A connection for a single statement that is a transaction of its own (a conditional
        ``UPDATE ... RETURNING``, one read) on a hot path.

        On a database server it runs in autocommit: one statement is as atomic as it is inside a
        transaction, without the ``BEGIN`` and ``COMMIT`` round trips (measured on the local
        PostgreSQL: about half the time and the client CPU of the same statement in a transaction;
        benchmarks/README.md, "One round trip per queue statement"). Each statement on it commits
        as it ends, on SQLite too: a caller that needs several atomic uses :meth:`session`.
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            yield connection

    def read_rows(
        self, statement: Executable, params: dict[str, Any], *, through: Session | None = None
    ) -> Sequence[Row[Any]]:
        """The rows of one prebuilt read: through ``through`` (a caller's transaction, e.g. an
        outbox delivery's, so the read sees its writes) when given, else on a :meth:`reader`."""
        if through is not None:
            return through.execute(statement, params).all()
        with self.reader() as connection:
            return connection.execute(statement, params).all()

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A plain connection for one read on a hot path (rolled back when closed).

        No ORM session and no explicit transaction: with a statement built once at import, a read
        costs a fifth of the same read through :meth:`session` (benchmarks/api_occurrences.py).
        """
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def reader_nowait(self) -> Iterator[Connection | None]:
        """A connection for one read on the event loop, or None when none is free at once.

        The loop serves every request, so it must never wait for a connection: it gets one
        dedicated SQLite connection, not the shared pool (which can be exhausted by the thread
        pool's requests). A second loop (or a nested use) finds it taken and gets None; so does a
        database server. On None the caller does its read in the thread pool instead.
        """
        connection: Connection | None = None
        if self._loop_engine is not None:
            try:
                connection = self._loop_engine.connect()
            except PoolTimeout:
                connection = None
        if connection is None:
            yield None
            return
        with connection:
            yield connection

    @contextmanager
    def prompt_write(self) -> Iterator[Connection]:
        """A transaction for one short write whose caller is waiting to answer (a webhook's ack).

        Commits on success, rolls back on any exception. On a SQLite file it runs on a dedicated
        connection that takes the write lock at BEGIN and, while another writer (the worker) holds
        it, asks again every 0.5 ms instead of sleeping in the busy handler's growing steps:
        measured, a batch insert waiting behind the worker's transactions had a p99 of 82-783 ms
        that way and 10-41 ms this way (benchmarks/README.md, Zoom section). Callers share the one
        connection, in turn.
        """
        if self._prompt_engine is None:
            with self.engine.begin() as connection:
                yield connection
            return
        with self._prompt_engine.connect() as connection:
            _begin_immediate(connection)
            try:
                yield connection
                connection.exec_driver_sql("COMMIT")
            except BaseException:
                if connection.connection.driver_connection.in_transaction:  # type: ignore[union-attr]
                    connection.exec_driver_sql("ROLLBACK")
                raise
            finally:
                connection.commit()  # SQLAlchemy's own bookkeeping; the driver has nothing open by now

    def close(self) -> None:
        if self._prompt_engine is not None:
            self._prompt_engine.dispose()
        if self._loop_engine is not None:
            self._loop_engine.dispose()
        self.engine.dispose()
