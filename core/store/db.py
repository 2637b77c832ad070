"""Database engine, migrations and sessions.

No module-level engine: callers build a :class:`Store` from a URL and pass it down.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from core.crypto.keyring import Keyring

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (the web process) work while a sync writes; busy_timeout makes a second
    # writer wait instead of failing at once with "database is locked".
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url`` with the settings Alliance relies on."""
    if url.startswith("sqlite"):
        # Keep as many connections as the web server runs requests at once (uvicorn's thread pool
        # runs up to 40): past the default 5, every extra connection was opened, given its
        # pragmas and closed again per request. An idle SQLite connection costs little memory.
        engine = create_engine(url, pool_size=16, max_overflow=32)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


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
    def reader(self) -> Iterator[Connection]:
        """A plain connection for one read on a hot path (rolled back when closed).

        No ORM session and no explicit transaction: with a statement built once at import, a read
        costs a fifth of the same read through :meth:`session` (benchmarks/api_occurrences.py).
        """
        with self.engine.connect() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()
