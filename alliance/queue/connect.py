"""Connections of a procrastinate worker: libpq keepalives so a half-open connection is noticed.

procrastinate issue #1334: a worker whose database connection silently died (a NAT or failover
dropping it without a reset) waits forever. TCP keepalives plus ``tcp_user_timeout`` make the
kernel give up on such a connection within about a minute, so the worker sees an error instead.
"""

from __future__ import annotations

from typing import Any

from procrastinate import PsycopgConnector
from sqlalchemy.engine import make_url

__all__ = ["KEEPALIVES", "conninfo", "make_connector"]

KEEPALIVES: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,  # milliseconds
    "connect_timeout": 10,
}


def conninfo(database_url: str) -> str:
    """A libpq URL for psycopg from the store's SQLAlchemy URL (``postgresql+psycopg://...``)."""
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


def make_connector(database_url: str, *, max_size: int) -> PsycopgConnector:
    """procrastinate's async connector on ``database_url``, every pooled connection with keepalives."""
    return PsycopgConnector(conninfo=conninfo(database_url), kwargs=dict(KEEPALIVES), min_size=1, max_size=max_size)
