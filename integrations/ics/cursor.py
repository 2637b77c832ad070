"""The opaque cursor of an ICS connection: what the last full listing was made from.

An ICS feed has no change log, so the cursor cannot ask for "changes since". It records enough to
know that nothing *could* have changed: the HTTP validators (ETag / Last-Modified), the sha256 of
the bytes last parsed, the day the listing window started on, and a fingerprint of the settings
that shape the listing. Any mismatch simply means "list everything again".
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

_VERSION = 1


@dataclass(frozen=True, slots=True)
class IcsCursor:
    sha256: str
    window_day: str  # ISO date of the window start (UTC) the listing was made for
    fingerprint: str  # of the settings that shape a listing (see IcsProvider)
    etag: str | None = None
    last_modified: str | None = None

    def dumps(self) -> str:
        return json.dumps({"v": _VERSION, **asdict(self)}, separators=(",", ":"), sort_keys=True)

    @classmethod
    def loads(cls, text: str | None) -> IcsCursor | None:
        """The cursor in ``text``, or None when it is absent or unreadable (never an error)."""
        if not text:
            return None
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.pop("v", None) != _VERSION:
                return None
            cursor = cls(**data)
        except (ValueError, TypeError):
            return None
        if not all(isinstance(v, str) for v in (cursor.sha256, cursor.window_day, cursor.fingerprint)):
            return None
        return cursor

    def with_validators(self, etag: str | None, last_modified: str | None) -> IcsCursor:
        return replace(self, etag=etag, last_modified=last_modified)


__all__ = ["IcsCursor"]
