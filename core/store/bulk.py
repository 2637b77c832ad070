"""Bulk inserts: COPY on PostgreSQL for big batches, the driver's own executemany elsewhere.

A first mirror writes tens of thousands of rows (occurrences, history, outbox). Through
``session.execute(insert(table), rows)`` SQLAlchemy builds and processes parameters row by row
and value by value, which was most of a first mirror's cost (benchmarks/README.md, Google
section). Here each column's values are converted once per batch with the column type's own
bind processor (so what is stored is exactly what SQLAlchemy would store), identical instants are
converted once, and the rows go to the driver in one ``executemany`` (SQLite, small PostgreSQL
batches) or one ``COPY`` (large PostgreSQL batches), on the session's own connection: they commit
or roll back with everything else.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Table, insert
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.orm import Session

from core.store.models import UtcDateTime

# Below this a plain executemany is as fast and simpler to reason about (rows of the mirror).
COPY_THRESHOLD = 200
# Notes and audit entries (three tables per note, rows ~1.3 KB): COPY already pays at a call of 100
# notes (benchmarks/README.md, session notes, 2026-11-27 session 4).
SMALL_COPY_THRESHOLD = 50

# Rows per multi-row INSERT on SQLite (also bounded by its limit on bound variables): statements
# of a first mirror's page size, few enough distinct texts for the driver's statement cache.
_SQLITE_ROWS_PER_STATEMENT = 2500

_PLACEHOLDERS = {"qmark": "?", "format": "%s", "pyformat": "%s"}

Processor = Callable[[Any], Any]


class EncodedJson(str):
    """A JSON column's value already encoded, exactly as ``json.dumps`` (default arguments) encodes it.

    What SQLAlchemy's JSON type stores on SQLite, and what ``COPY`` sends to PostgreSQL, is that
    text: a writer that knows the shape of its values (the sync engine's outbox payloads) hands
    the text over instead of a dict and saves the encoder call per row. Anything else still sees a
    JSON value: on the paths that need one (small PostgreSQL batches) the text is decoded again.
    """

    __slots__ = ()


def insert_rows(
    target: Session | Connection,
    table: Table,
    rows: Sequence[dict[str, Any]],
    *,
    instants: dict[Any, Any] | None = None,
) -> None:
    """Insert ``rows`` (dicts with identical keys) into ``table`` inside the transaction of ``target``.

    ``instants``: see :func:`insert_tuples`.
    """
    if not rows:
        return
    names = list(rows[0])
    keys = rows[0].keys()
    for row in rows:
        if row.keys() != keys:
            raise ValueError("bulk rows must all have the same keys")
    _check_names(table, names)
    _write(target, table, names, [[row[name] for row in rows] for name in names], instants)


def insert_tuples(
    target: Session | Connection,
    table: Table,
    names: Sequence[str],
    rows: Sequence[tuple[Any, ...]],
    *,
    instants: dict[Any, Any] | None = None,
    iso_texts: Mapping[datetime, str] | None = None,
) -> None:
    """:func:`insert_rows` for rows given as tuples in the order of ``names`` (no dict per row).

    ``instants`` is a memo of converted instants for the inserts of one transaction: pass the
    same dict to each, and an instant written to several tables (an occurrence's start, its
    history's) or to every row (a sync's ``now``) is converted once. ``iso_texts``: instants whose
    UTC ISO text (``datetime.astimezone(UTC).isoformat()``) the caller has made already; SQLite's
    text is cut from it instead of formatting the instant again.
    """
    if not rows:
        return
    _check_names(table, names)
    try:
        columns = [list(column) for column in zip(*rows, strict=True)]
    except ValueError:
        raise ValueError("bulk rows must all have one value per name") from None
    if len(columns) != len(names):
        raise ValueError("bulk rows must all have one value per name")
    _write(target, table, list(names), columns, instants, iso_texts=iso_texts)


def insert_columns(
    target: Session | Connection,
    table: Table,
    columns: Mapping[str, Sequence[Any]],
    *,
    copy_from: int = COPY_THRESHOLD,
) -> None:
    """Insert rows given column by column (``{"id": [1, 2], "kind": ["a", "b"]}``, equal lengths).

    For callers that build their rows in bulk: no dict per row to build and take apart again.
    ``copy_from``: the number of rows from which PostgreSQL gets them by ``COPY``.
    """
    names = list(columns)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError("bulk columns must all have the same length")
    if not names or lengths == {0}:
        return
    _check_names(table, names)
    _write(target, table, names, [list(values) for values in columns.values()], None, copy_from)


def _check_names(table: Table, names: Sequence[str]) -> None:
    for name in names:
        if name not in table.c:
            raise ValueError(f"{table.name} has no column {name!r}")


def _write(
    target: Session | Connection,
    table: Table,
    names: list[str],
    columns: list[list[Any]],
    instants: dict[Any, Any] | None,
    copy_from: int = COPY_THRESHOLD,
    *,
    iso_texts: Mapping[datetime, str] | None = None,
) -> None:
    connection = target.connection() if isinstance(target, Session) else target
    dialect = connection.dialect
    memo = {} if instants is None else instants
    if dialect.name == "postgresql" and len(columns[0]) >= copy_from:
        _copy(connection, table, names, columns, memo)
    elif dialect.paramstyle in _PLACEHOLDERS:
        _executemany(connection, table, names, columns, dialect, memo, iso_texts)
    else:  # a driver this module does not know: let SQLAlchemy do it
        _decode_encoded_json(table, names, columns)
        connection.execute(insert(table), [dict(zip(names, row, strict=True)) for row in zip(*columns, strict=True)])


def _decode_encoded_json(table: Table, names: list[str], columns: list[list[Any]]) -> None:
    # Paths that hand JSON values to SQLAlchemy's or the driver's own encoder: give them values.
    for i, name in enumerate(names):
        if isinstance(table.c[name].type, JSON):
            columns[i] = [json.loads(v) if type(v) is EncodedJson else v for v in columns[i]]


def _convert_instants(values: list[Any], process: Processor, memo: dict[Any, Any]) -> list[Any]:
    """``values`` converted by ``process``, each distinct instant once (``memo`` keeps them).

    The per-value work is C only (a set, ``dict.__getitem__``): a flush writes ten instants per
    occurrence, most of them repeated (``now``, an occurrence's start again in its history).
    """
    for value in set(values).difference(memo):
        memo[value] = process(value)
    return list(map(memo.__getitem__, values))


def _sqlite_text_from_iso(iso: str) -> str | None:
    """SQLite's text of an instant from its UTC ISO text, or None for a text of another shape.

    ``2026-05-04T08:15:30+00:00`` -> ``2026-05-04 08:15:30.000000``;
    ``2026-05-04T08:15:30.123456+00:00`` -> ``2026-05-04 08:15:30.123456``.
    """
    if not iso.endswith("+00:00") or iso[10:11] != "T":
        return None
    if len(iso) == 25:
        return f"{iso[:10]} {iso[11:19]}.000000"
    if len(iso) == 32:
        return f"{iso[:10]} {iso[11:26]}"
    return None


def _memoised_by_identity(process: Processor) -> Processor:
    # JSON values (dicts, unhashable): a batch that repeats one object (core.audit.record_many hands
    # every entry with the same detail the same dict) has it encoded once. The objects stay alive in
    # the caller's columns for the whole call, so their ids cannot be reused meanwhile.
    memo: dict[int, Any] = {}

    def convert(value: Any) -> Any:
        key = id(value)
        try:
            return memo[key]
        except KeyError:
            result = memo[key] = process(value)
            return result

    return convert


def _sqlite_utc(process: Processor, iso_texts: Mapping[datetime, str] | None = None) -> Processor:
    # What UtcDateTime stores on SQLite (naive UTC text, "2026-05-04 08:15:30.123456"), written
    # directly for instants already in UTC (cut from their ISO text when the caller has it);
    # anything else goes through the type itself.
    def convert(value: Any) -> Any:
        if type(value) is datetime and value.tzinfo is UTC:
            if iso_texts is not None:
                iso = iso_texts.get(value)
                text = _sqlite_text_from_iso(iso) if iso is not None else None
                if text is not None:
                    return text
            return value.isoformat(" ", "microseconds")[:-6]
        return process(value)

    return convert


def _executemany(
    connection: Connection,
    table: Table,
    names: list[str],
    columns: list[list[Any]],
    dialect: Dialect,
    memo: dict[Any, Any],
    iso_texts: Mapping[datetime, str] | None = None,
) -> None:
    sqlite = dialect.name == "sqlite"
    if not sqlite:
        _decode_encoded_json(table, names, columns)
    for i, name in enumerate(names):
        column_type = table.c[name].type
        process: Processor | None = column_type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            if isinstance(column_type, UtcDateTime):
                columns[i] = _convert_instants(columns[i], _sqlite_utc(process, iso_texts) if sqlite else process, memo)
                continue
            if isinstance(column_type, JSON):
                # SQLite stores JSON as json.dumps' text: already encoded values go as they are.
                encode = _memoised_by_identity(process)
                columns[i] = [v if type(v) is EncodedJson else encode(v) for v in columns[i]]
                continue
            columns[i] = list(map(process, columns[i]))
    preparer = dialect.identifier_preparer
    placeholder = _PLACEHOLDERS[dialect.paramstyle]
    head = f"INSERT INTO {preparer.format_table(table)} ({', '.join(preparer.quote(n) for n in names)}) VALUES "
    row_marks = f"({', '.join([placeholder] * len(names))})"
    if sqlite:
        _sqlite_multirow(connection, head, row_marks, columns)
        return
    connection.exec_driver_sql(head + row_marks, list(zip(*columns, strict=True)))


def _sqlite_multirow(connection: Connection, head: str, row_marks: str, columns: list[list[Any]]) -> None:
    """The rows as few multi-row ``INSERT ... VALUES (...), (...)`` statements as SQLite's limits allow.

    ``executemany`` steps SQLite once per row, and Python's sqlite3 lets go of the interpreter lock
    around every step: with another thread running Python meanwhile (the sync engine's writer, the
    provider's page fetcher), each row then waits for the lock to come back. One statement is
    stepped once for all its rows. The same values are bound, in the same order (rowids follow it).
    """
    width = len(columns)
    count = len(columns[0])
    driver = connection.connection.driver_connection
    limit = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) if driver is not None else 999
    per_statement = max(1, min(_SQLITE_ROWS_PER_STATEMENT, limit // width))
    for at in range(0, count, per_statement):
        rows = min(per_statement, count - at)
        flat: list[Any] = [None] * (rows * width)
        for i, column in enumerate(columns):
            flat[i::width] = column[at : at + rows]
        connection.exec_driver_sql(head + ", ".join([row_marks] * rows), tuple(flat))


def _copy(
    connection: Connection, table: Table, names: list[str], columns: list[list[Any]], memo: dict[Any, Any]
) -> None:
    for i, name in enumerate(names):
        column_type = table.c[name].type
        if isinstance(column_type, JSON):
            # JSON text (COPY's text format: the server parses it), as psycopg's Jsonb would
            # write it (json.dumps), encoded once per distinct object.
            encode = _memoised_by_identity(json.dumps)
            columns[i] = [
                None if value is None else value if type(value) is EncodedJson else encode(value)
                for value in columns[i]
            ]
        elif isinstance(column_type, UtcDateTime):
            columns[i] = _convert_instants(columns[i], _utc, memo)
    dbapi = connection.connection.driver_connection
    if dbapi is None:
        raise RuntimeError("no DBAPI connection behind the session")
    quoted = ", ".join(f'"{name}"' for name in names)
    with dbapi.cursor() as cursor, cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
        for row in zip(*columns, strict=True):
            copy.write_row(row)


def _utc(value: Any) -> Any:
    # Mirrors UtcDateTime.process_bind_param: aware datetimes only, stored in UTC.
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)
    return value
