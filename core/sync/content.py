"""Mirrored content at rest: encrypted per therapist, compared through a keyed hash.

Titles, descriptions, locations and attendees can name a client, so they are stored as one
AES-GCM blob bound to the occurrence's identity, and the "did it change" hash is an HMAC under
a key derived from the therapist's data key (a plain hash of "Session Anna 18:00" could be
confirmed by guessing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from core.crypto import OwnerCipher
from core.sync.types import OccurrenceKey, RemoteOccurrence

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_quote = json.encoder.encode_basestring


@dataclass(frozen=True, slots=True)
class OccurrenceContent:
    title: str = ""
    description: str = ""
    location: str = ""
    attendees: tuple[str, ...] = ()
    video_url: str | None = None

    @classmethod
    def of(cls, occ: RemoteOccurrence, video_url: str | None) -> OccurrenceContent:
        return cls(occ.title, occ.description, occ.location, occ.attendees, video_url)


def content_context(connection_id: int, key: OccurrenceKey) -> str:
    """The associated data binding a content blob to its occurrence's identity."""
    return content_context_of(connection_id, key.ical_uid, key.recurrence_id)


def content_context_of(connection_id: int, ical_uid: str, recurrence_id: str) -> str:
    """:func:`content_context` from the identity's parts (listings read them as plain columns)."""
    return f"occurrences.content|{connection_id}|{ical_uid}|{recurrence_id}"


def seal(cipher: OwnerCipher, connection_id: int, key: OccurrenceKey, content: OccurrenceContent) -> bytes:
    """Encrypt ``content`` bound to this occurrence's identity."""
    payload = _encode(
        [content.title, content.description, content.location, list(content.attendees), content.video_url]
    )
    return cipher.encrypt(payload.encode(), content_context(connection_id, key))


def seal_occurrence(cipher: OwnerCipher, connection_id: int, occ: RemoteOccurrence, video_url: str | None) -> bytes:
    """:func:`seal` of ``OccurrenceContent.of(occ, video_url)``, the same bytes sealed, for a first mirror.

    Every new occurrence is sealed once: this writes the JSON array by hand (no content object, no
    encoder call), falling back to :func:`seal` for anything but plain strings.
    """
    title, description, location, attendees_of = occ.title, occ.description, occ.location, occ.attendees
    if (
        type(title) is not str
        or type(description) is not str
        or type(location) is not str
        or (attendees_of and not all(type(a) is str for a in attendees_of))
    ):
        return seal(cipher, connection_id, occ.key, OccurrenceContent.of(occ, video_url))
    attendees = ",".join(map(_quote, attendees_of)) if attendees_of else ""
    video = "null" if video_url is None else _quote(video_url)
    payload = f"[{_quote(title)},{_quote(description)},{_quote(location)},[{attendees}],{video}]"
    return cipher.encrypt(payload.encode(), content_context_of(connection_id, occ.key.ical_uid, occ.key.recurrence_id))


def unseal(cipher: OwnerCipher, connection_id: int, key: OccurrenceKey, blob: bytes) -> OccurrenceContent:
    return parse_content(cipher.decrypt(blob, content_context(connection_id, key)))


def parse_content(plaintext: bytes) -> OccurrenceContent:
    """Decode decrypted content (see :func:`seal` for the layout)."""
    title, description, location, attendees, video_url = json.loads(plaintext)
    return OccurrenceContent(title, description, location, tuple(attendees), video_url)


def hash_key(cipher: OwnerCipher) -> bytes:
    """The therapist-specific key of content hashes (derived, never stored)."""
    return hmac.new(cipher.key, b"alliance content hash v1", hashlib.sha256).digest()
