"""Bulk inserts: COPY on PostgreSQL for big batches, multi-row executemany elsewhere."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.orm import Session

# Below this a plain executemany is as fast and simpler to reason about.
COPY_THRESHOLD = 200


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts with identical keys) into ``table`` inside the session's transaction.

    A first mirror writes tens of thousands of rows; on PostgreSQL COPY is several times cheaper
    than INSERT for that (benchmarks/README.md), and it runs on the session's own connection, so
    it commits or rolls back with everything else.
    """
    if not rows:
        return
    if session.get_bind().dialect.name == "postgresql" and len(rows) >= COPY_THRESHOLD:
        _copy(session, table, rows)
    else:
        session.execute(insert(table), list(rows))


def _copy(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    from psycopg.types.json import Jsonb

    names = list(rows[0])
    columns = [table.c[name] for name in names]
    is_json = [isinstance(c.type, JSON) for c in columns]
    dbapi = session.connection().connection.driver_connection
    if dbapi is None:
        raise RuntimeError("no DBAPI connection behind the session")
    quoted = ", ".join(f'"{name}"' for name in names)
    with dbapi.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for row in rows:
            if row.keys() != rows[0].keys():
                raise ValueError("bulk rows must all have the same keys")
            copy.write_row(
                [
                    Jsonb(value) if json and value is not None else _utc(value)
                    for value, json in zip((row[n] for n in names), is_json, strict=True)
                ]
            )


def _utc(value: Any) -> Any:
    # Mirrors UtcDateTime.process_bind_param: aware datetimes only, stored in UTC.
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)
    return value
