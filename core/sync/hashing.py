"""Content hash of an occurrence: "changed" means this hash changed, not merely an etag."""

from __future__ import annotations

import hashlib
import json

from core.sync.types import RemoteOccurrence


def _text(value: str) -> str:
    # Providers differ in line endings and trailing blanks for the same text.
    return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()


def content_hash(occ: RemoteOccurrence) -> str:
    """SHA-256 over the normalised fields Alliance mirrors (provider ids excluded)."""
    fields = [
        occ.start.isoformat(),
        occ.end.isoformat(),
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
    return hashlib.sha256(encoded).hexdigest()
