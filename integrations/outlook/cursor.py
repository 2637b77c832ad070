"""The opaque cursor of an Outlook connection.

It holds Graph's whole ``@odata.deltaLink`` (all query parameters are encoded in its token and
must not be repeated), when and over which window the complete listing that started the delta
chain was made, and the :class:`IdentityIndex` that names later ``@removed`` items.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations.base.json_body import dump_json, parse_json
from integrations.outlook.mapping import IdentityIndex

_VERSION = 1


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
        # Written at the end of every round, the index included (10,000 entries, ~1.5 MB, for a
        # 10,000-event window), in insertion order: nothing compares cursors as text. orjson:
        # ~20-90 ms -> ~2-5 ms with the standard library's encoder (benchmarks/README.md).
        return dump_json(data)

    @classmethod
    def loads(cls, text: str | None) -> OutlookCursor | None:
        """The cursor in ``text``, or None when absent or unreadable (a complete listing follows)."""
        if not text:
            return None
        try:
            data = parse_json(text)
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
