"""Content hash of an occurrence: "changed" means this hash changed, not merely an etag.

The hash is stored next to every mirrored occurrence, so its bytes must never change between
versions (a changed hash makes every row look edited: tests/core/test_hashing_stable.py pins
them). It is SHA-256, or HMAC-SHA256 under the therapist's hash key, over the compact JSON array
of the normalised fields. A first mirror hashes every occurrence, so the hot path below writes
that same JSON text by hand (the standard library's own string quoting, no encoder object per
call) and runs HMAC from precomputed pads (``hmac.digest`` fetches the digest from OpenSSL 3 on
every call, 4x the hashing itself); :func:`reference_encoding` is the plain definition, and a
property test checks that both agree byte for byte.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable
from datetime import UTC

from core.sync.types import RemoteOccurrence

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# What that encoder writes for one string (with ensure_ascii=False): the quoted, escaped text.
_quote: Callable[[str], str] = json.encoder.encode_basestring
_BLOCK = 64  # SHA-256's block size, the HMAC pad length (RFC 2104)
_GIL_MINSIZE = 2048  # CPython's hashlib releases the interpreter lock from this many bytes on


def _text(value: str) -> str:
    # Providers differ in line endings and trailing blanks for the same text.
    if "\n" not in value:  # one line (most titles): the same result, cheaper
        return value.strip()
    return "\n".join(line.rstrip() for line in value.replace("\r\n", "\n").split("\n")).strip()


def _attendees(occ: RemoteOccurrence) -> list[str]:
    return sorted({a.strip().lower() for a in occ.attendees if a.strip()})


def reference_encoding(occ: RemoteOccurrence) -> bytes:
    """The hashed bytes, by definition: the normalised fields as a compact JSON array."""
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
        _attendees(occ),
    ]
    return _encode(fields).encode()


def encoding(occ: RemoteOccurrence, start_iso: str, end_iso: str) -> bytes:
    """:func:`reference_encoding`, written directly; ``start_iso``/``end_iso`` are the UTC ISO texts.

    The caller passes the instants' text because it needs the same text elsewhere (the engine's
    outbox payloads). Anything of an unexpected type takes the reference path.
    """
    all_day = occ.all_day
    if (all_day is not True and all_day is not False) or type(occ.timezone) not in (str, type(None)):
        return reference_encoding(occ)
    attendees = ",".join(map(_quote, _attendees(occ))) if occ.attendees else ""
    # ISO instants are digits and "-:+T." only: nothing to escape.
    return (
        f'["{start_iso}","{end_iso}",{"true" if all_day else "false"},{_quote(str(occ.status))},'
        f"{_quote(occ.timezone or '')},{_quote(_text(occ.title))},{_quote(_text(occ.description))},"
        f"{_quote(_text(occ.location))},{_quote(occ.url.strip())},{_quote(occ.conference_url.strip())},"
        f"[{attendees}]]"
    ).encode()


class ContentHasher:
    """HMAC-SHA256 content hashes under one key, the pads computed once (RFC 2104, as ``hmac``)."""

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key.ljust(_BLOCK, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in key))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in key))

    def digest_hex(self, message: bytes) -> str:
        inner = self._inner.copy()
        if len(message) < _GIL_MINSIZE:
            inner.update(message)
        else:
            # hashlib lets go of the interpreter lock for 2,048 bytes and more; getting it back
            # behind the sync's other threads costs up to the 5 ms switch interval, far more than
            # hashing a long description. Smaller pieces hash to the same digest, lock kept.
            view = memoryview(message)
            for at in range(0, len(message), _GIL_MINSIZE - 1):
                inner.update(view[at : at + _GIL_MINSIZE - 1])
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.hexdigest()

    def __call__(self, occ: RemoteOccurrence, start_iso: str, end_iso: str) -> str:
        """The keyed hash of ``occ`` (``start_iso``/``end_iso``: its instants as UTC ISO text)."""
        return self.digest_hex(encoding(occ, start_iso, end_iso))


def content_hash(occ: RemoteOccurrence, key: bytes | None = None) -> str:
    """SHA-256 over the normalised fields Alliance mirrors (provider ids excluded).

    With ``key`` it is an HMAC, which is what the store keeps (see core.sync.content).
    """
    encoded = reference_encoding(occ)
    if key is not None:
        return hmac.digest(key, encoded, "sha256").hex()
    return hashlib.sha256(encoded).hexdigest()
