"""Content hash of an occurrence: "changed" means this hash changed, not merely an etag."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC

from core.sync.types import RemoteOccurrence


def _text(value: str) -> str:
    # Providers differ in line endings and trailing blanks for the same text.
    return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()


def content_hash(occ: RemoteOccurrence, key: bytes | None = None) -> str:
    """SHA-256 over the normalised fields Alliance mirrors (provider ids excluded).

    With ``key`` it is an HMAC, which is what the store keeps (see core.sync.content).
    """
    fields = [
        # The same instant written with another offset is not a change.
        occ.start.astimezone(UTC).isoformat(),
        occ.end.astimezone(UTC).isoformat(),
        occ.all_day,
        str(occ.status),
        occ.timezone or "",
        _text(occ.title),
        _text(occ.description),
        _text(occ.location),
        occ.url.strip(),
        occ.conference_url.strip(),
        sorted({a.strip().lower() for a in occ.attendees if a.strip()}),
    ]
    encoded = json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()
    if key is not None:
        return hmac.new(key, encoded, hashlib.sha256).hexdigest()
    return hashlib.sha256(encoded).hexdigest()
