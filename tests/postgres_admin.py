"""PostgreSQL seen from outside a connection: what an administrator (or a restart) does to one, for
the liveness tests, and the round trips a client made, read from a libpq trace."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text


def terminate_backend(url: str, pid: int) -> None:
    """End the server process of one connection and wait until the server has let it go."""
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid}).scalar_one()
            for _ in range(100):  # the backend is gone once pg_stat_activity no longer lists it
                if not conn.execute(text("SELECT 1 FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}).first():
                    break
                time.sleep(0.02)
    finally:
        admin.dispose()


def round_trips(trace: str) -> int:
    """Requests a client sent and waited for, in a libpq trace (``PGconn.trace``): a simple-protocol
    ``Query``, or an extended-protocol batch (Parse, Bind, Execute...) ended by ``Sync``."""
    sent = [line.split("\t")[3].split()[0] for line in trace.splitlines() if "\tF\t" in line]
    return sent.count("Query") + sent.count("Sync")
