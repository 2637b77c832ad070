"""What a database administrator (or a server restart) does to a connection, for the liveness tests."""

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
