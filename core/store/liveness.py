"""Checking a pooled PostgreSQL connection before use only when it has been idle for a while.

``pool_pre_ping`` sends ``SELECT 1`` before *every* checkout: one more round trip and one more
statement for the server per transaction. Under load a pooled connection is used again within
milliseconds of being returned, and a connection that was fine a moment ago is very rarely dead
now; the connections that go stale (a server restart, a failover, a firewall dropping idle
sockets) are those left idle. So a connection is pinged only when it was last returned more than
:data:`IDLE_PING_SECONDS` ago, and a failed ping makes the pool replace it (SQLAlchemy's
"pessimistic" recipe: ``DisconnectionError`` from a ``checkout`` listener). A connection that dies
while busy still fails its statement, as it would with ``pool_pre_ping``, and SQLAlchemy then
invalidates the pool so the next checkouts reconnect.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import event, exc
from sqlalchemy.engine import Engine

__all__ = ["IDLE_PING_SECONDS", "ping_idle_connections"]

IDLE_PING_SECONDS = 5.0
_RETURNED_AT = "alliance_returned_at"


def ping_idle_connections(engine: Engine, idle_seconds: float = IDLE_PING_SECONDS) -> None:
    """Install the listeners on ``engine`` (instead of ``pool_pre_ping``)."""
    dialect = engine.dialect

    def connected(_dbapi_connection: Any, record: Any) -> None:
        record.info[_RETURNED_AT] = time.monotonic()  # just opened: known alive

    def returned(_dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            record.info[_RETURNED_AT] = time.monotonic()

    def checked_out(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        returned_at = record.info.get(_RETURNED_AT)
        if returned_at is not None and time.monotonic() - returned_at < idle_seconds:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, dbapi_connection, None):
                raise exc.DisconnectionError("the pooled connection was closed by the server") from error
            raise

    event.listen(engine, "connect", connected)
    event.listen(engine, "checkin", returned)
    event.listen(engine, "checkout", checked_out)
