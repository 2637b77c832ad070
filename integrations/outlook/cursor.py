"""The opaque cursor of an Outlook connection.

It holds Graph's whole ``@odata.deltaLink`` (all query parameters are encoded in its token and
must not be repeated), when and over which window the complete listing that started the delta
chain was made, and the :class:`IdentityIndex` that names later ``@removed`` items.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations.outlook.mapping import IdentityIndex

_VERSION = 1
# Written at the end of every round, the index included (10,000 entries for a 10,000-event
# window): in insertion order, as nothing compares cursors as text; sorting doubled the time
# on the last page of a full mirror (~17 -> ~7 ms for 10,000 entries).
_encode = json.JSONEncoder(separators=(",", ":"), check_circular=False).encode


@dataclass(frozen=True)
class OutlookCursor:
    delta_link: str
    listed_at: datetime  # when the complete listing of this delta chain ran
    span_seconds: tuple[int, int]  # its window: seconds before and after listed_at
    index: IdentityIndex = field(default_factory=IdentityIndex)

    def dumps(self) -> str:
        data: dict[str, Any] = {
            "v": _VERSION,
            "delta_link": self.delta_link,
            "listed_at": self.listed_at.isoformat(),
            "span": list(self.span_seconds),
            "index": self.index.as_json(),
        }
        return _encode(data)

    @classmethod
    def loads(cls, text: str | None) -> OutlookCursor | None:
        """The cursor in ``text``, or None when absent or unreadable (a complete listing follows)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != _VERSION:
                return None
            listed_at = datetime.fromisoformat(data["listed_at"])
            past, future = (int(x) for x in data["span"])
            link = data["delta_link"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(link, str) or not link or listed_at.tzinfo is None:
            return None
        return cls(link, listed_at, (past, future), IdentityIndex.from_json(data.get("index")))


__all__ = ["OutlookCursor"]
