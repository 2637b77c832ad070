"""The opaque cursor of a Google connection.

It carries Google's ``nextSyncToken`` and everything needed to continue from it: the calendar and
the parameters of the listing that produced it (the sync guide: "all other query parameters should
be the same as for the initial synchronization"), when and over which window that complete
listing was made, and the :class:`IdentityIndex` that names later tombstones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from integrations.google.mapping import IdentityIndex

_VERSION = 1


@dataclass(frozen=True)
class GoogleCursor:
    sync_token: str
    calendar_id: str
    params: dict[str, Any]  # events.list parameters to repeat (singleEvents, maxResults, eventTypes)
    listed_at: datetime  # when the last complete listing ran
    span_seconds: tuple[int, int]  # its window: seconds before and after listed_at
    index: IdentityIndex = field(default_factory=IdentityIndex)

    def dumps(self) -> str:
        return json.dumps(
            {
                "v": _VERSION,
                "sync_token": self.sync_token,
                "calendar_id": self.calendar_id,
                "params": self.params,
                "listed_at": self.listed_at.isoformat(),
                "span": list(self.span_seconds),
                "index": self.index.as_json(),
            },
            separators=(",", ":"),
            sort_keys=True,
        )

    @classmethod
    def loads(cls, text: str | None) -> GoogleCursor | None:
        """The cursor in ``text``, or None when absent or unreadable (a full listing follows)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("v") != _VERSION:
                return None
            listed_at = datetime.fromisoformat(data["listed_at"])
            past, future = (int(x) for x in data["span"])
            sync_token, calendar_id, params = data["sync_token"], data["calendar_id"], data["params"]
        except (ValueError, KeyError, TypeError):
            return None
        if not (isinstance(sync_token, str) and isinstance(calendar_id, str) and isinstance(params, dict)):
            return None
        if listed_at.tzinfo is None:
            return None
        return cls(
            sync_token, calendar_id, params, listed_at, (past, future), IdentityIndex.from_json(data.get("index"))
        )


__all__ = ["GoogleCursor"]
