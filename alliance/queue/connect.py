"""Connections of a procrastinate worker: one round trip per queue statement, keepalives, dead ones replaced.

procrastinate's connector pools psycopg connections in transaction mode and has the pool check
every connection it hands out (``AsyncConnectionPool.check_connection``, an empty query). Every
queue statement (a fetch, a finish, a heartbeat, a retry) is a single call of one of
procrastinate's functions, yet each cost four round trips: the check (an empty query), ``BEGIN``,
the statement, ``COMMIT``. Here the pooled connections run in autocommit (one statement is its
own transaction, as atomic as before) and are checked the way :mod:`core.store.liveness` checks
the store's: only when idle for :data:`~core.store.liveness.IDLE_PING_SECONDS`, or when the
server has sent something unasked (what it does when it terminates a connection: a restart, an
administrator's ``pg_terminate_backend``), which a zero-timeout ``poll`` of the socket sees
without a round trip (benchmarks/README.md, "One round trip per queue statement").

procrastinate issue #1334: a worker whose database connection silently died (a NAT or failover
dropping it without a reset) waits forever. TCP keepalives plus ``tcp_user_timeout`` make the
kernel give up on such a connection within about a minute, so the worker sees an error instead.
"""

from __future__ import annotations

import select
import time
import weakref
from typing import Any

from procrastinate import PsycopgConnector
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.engine import make_url

from core.store.liveness import IDLE_PING_SECONDS

__all__ = ["KEEPALIVES", "conninfo", "make_connector"]

KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
    "connect_timeout": 10,
}

# When each pooled connection was opened or last returned to the pool (time.monotonic()).
_last_known_alive: weakref.WeakKeyDictionary[AsyncConnection[Any], float] = weakref.WeakKeyDictionary()


def conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from the store's SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _statement_at_a_time(conn: AsyncConnection[Any]) -> None:
    """A new pooled connection: autocommit, so a statement needs no ``BEGIN`` and ``COMMIT`` around it."""
    await conn.set_autocommit(True)
    _last_known_alive[conn] = time.monotonic()


async def _returned(conn: AsyncConnection[Any]) -> None:
    _last_known_alive[conn] = time.monotonic()


def _server_spoke(conn: AsyncConnection[Any]) -> bool:
    """Whether an idle connection's socket has something to read (or is closed). Nothing is
    expected, so the server is most likely ending it (or sent a notice): the full check decides.

    ``poll``, not ``select``: a worker's socket numbers may exceed ``select``'s 1,024.
    """
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return bool(poller.poll(0))


async def _check_when_in_doubt(conn: AsyncConnection[Any]) -> None:
    """The pool's ``check``: ping only a connection idle for long, or one the server spoke on."""
    alive_at = _last_known_alive.get(conn)
    if alive_at is not None and time.monotonic() - alive_at < IDLE_PING_SECONDS and not _server_spoke(conn):
        return
    await AsyncConnectionPool.check_connection(conn)  # raises for a dead one: the pool replaces it


def _pool(**kwargs: Any) -> AsyncConnectionPool[Any]:
    kwargs["check"] = _check_when_in_doubt  # instead of procrastinate's ping on every checkout
    return AsyncConnectionPool(**kwargs)


def make_connector(database_url: str, *, max_size: int) -> PsycopgConnector:
    """procrastinate's async connector on ``database_url``: autocommit, keepalives, checked when in doubt."""
    return PsycopgConnector(
        conninfo=conninfo(database_url),
        kwargs=dict(KEEPALIVES),
        min_size=1,
        max_size=max_size,
        configure=_statement_at_a_time,
        reset=_returned,
        pool_factory=_pool,
    )
