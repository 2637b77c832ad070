"""The opaque cursor of an Outlook connection.

It holds Graph's whole ``@odata.deltaLink`` (all query parameters are encoded in its token and
must not be repeated) and when and over which window the complete listing that started the delta
chain was made: a few hundred bytes, however large the calendar.

Version 1 also carried an index of every event's Graph id and identity (~1.5 MB at 10,000 events,
rewritten by every round); the mirror answers that now (:class:`core.sync.types.ConsultsMirror`).
A version-1 cursor is still read, its index ignored. Code older than version 2 reads a version-2
cursor as unusable and lists everything once, rather than missing removals without the index.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from integrations.base.json_body import dump_json, parse_json

_VERSION = 2
_READABLE = frozenset({1, _VERSION})


@dataclass(frozen=True)
class OutlookCursor:
    delta_link: str
    listed_at: datetime  # when the complete listing of this delta chain ran
    span_seconds: tuple[int, int]  # its window: seconds before and after listed_at

    def dumps(self) -> str:
        data: dict[str, Any] = {
            "v": _VERSION,
            "delta_link": self.delta_link,
            "listed_at": self.listed_at.isoformat(),
            "span": list(self.span_seconds),
        }
        return dump_json(data)

    @classmethod
    def loads(cls, text: str | None) -> OutlookCursor | None:
        """The cursor in ``text``, or None when absent or unreadable (a complete listing follows)."""
        if not text:
            return None
        try:
            data = parse_json(text)
            if not isinstance(data, dict) or data.get("v") not in _READABLE:
                return None
            listed_at = datetime.fromisoformat(data["listed_at"])
            past, future = (int(x) for x in data["span"])
            link = data["delta_link"]
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(link, str) or not link or listed_at.tzinfo is None:
            return None
        return cls(link, listed_at, (past, future))


__all__ = ["OutlookCursor"]
