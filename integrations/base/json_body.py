"""Parsing and writing the JSON that providers send and that provider cursors hold.

A first mirror parses every page of a provider's listing (Graph: 20 pages of ~0.5 MB for 10,000
events; Google: 4 of ~2.5 MB) and the Outlook cursor writes an identity index of 10,000 entries
(~1.5 MB) at the end of every round. orjson does both in roughly half (parsing) and a tenth
(writing) of the standard library's time, and holds the interpreter lock for that much less while
the sync's other threads wait for it (benchmarks/README.md, "orjson").

Results are the standard library's: the same dicts, lists, strings and numbers, with one
difference: orjson reads an integer past 64 bits as a float (no field Alliance reads from Google
or Graph comes near that; their numbers are counts and sequence numbers). Where orjson is stricter
than ``json.loads`` (``NaN``, lone surrogate escapes, UTF-16 bodies) the standard library parses
instead, so nothing the providers' clients accepted before is refused now, and a body that is not
JSON raises ``json.JSONDecodeError`` with the standard library's message, as before.
"""

from __future__ import annotations

import json
from typing import Any

import orjson


def parse_json(data: bytes | bytearray | memoryview | str) -> Any:
    """``json.loads(data)``, through orjson where it can."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data if isinstance(data, str | bytes | bytearray) else bytes(data))


def dump_json(value: Any) -> str:
    """Compact JSON text of plain JSON data (dicts with string keys, lists, strings, numbers).

    What ``json.loads`` reads back equals ``value`` (tuples read back as lists, as always); the
    text itself is orjson's (UTF-8 characters as they are, not ``\\u`` escapes). What orjson
    refuses (non-string keys, integers past 64 bits, strings with lone surrogates, which could not
    be stored as UTF-8 unescaped) is written by the standard library, escaped as it does.
    """
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value, separators=(",", ":"))


__all__ = ["dump_json", "parse_json"]
