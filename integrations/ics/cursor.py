"""The opaque cursor of an ICS connection: what the last full listing was made from.

An ICS feed has no change log, so the cursor cannot ask for "changes since". It records enough to
know that nothing *could* have changed: the HTTP validators (ETag / Last-Modified), the sha256 of
the bytes last parsed, the day the listing window started on, and a fingerprint of the settings
that shape the listing. Any mismatch simply means "list everything again".
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace

_VERSION = 1

# A DTSTAMP line (with any folded continuation lines). Folded lines start with a blank, so a line
# starting with DTSTAMP is always the property itself, never text inside a description.
_DTSTAMP = re.compile(rb"^DTSTAMP[;:][^\r\n]*(?:\r?\n[ \t][^\r\n]*)*(?:\r?\n|$)", re.IGNORECASE | re.MULTILINE)


def feed_digest(body: bytes) -> str:
    """sha256 of a feed without its DTSTAMP lines.

    Google stamps every event with the export time, so its feed differs on every fetch (and never
    answers 304) although nothing a therapist sees changed. DTSTAMP feeds no mirrored field, so
    leaving it out lets an unchanged feed skip parsing entirely.
    """
    return hashlib.sha256(_DTSTAMP.sub(b"", body)).hexdigest()


@dataclass(frozen=True, slots=True)
class IcsCursor:
    sha256: str  # feed_digest() of the bytes last listed
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


__all__ = ["IcsCursor", "feed_digest"]
