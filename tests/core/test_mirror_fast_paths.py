"""The first mirror's hand-written encodings store exactly what the plain definitions store.

Hashes are compared with those already in existing mirrors, so a byte of difference would make
every occurrence look edited; sealed content is read back by ``json.loads``, so it must decode to
the same content. Random occurrences, including escapes, control characters and non-ASCII text.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime, timedelta, timezone

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import Owner, OwnerCipher
from core.sync.content import OccurrenceContent, seal, seal_occurrence, unseal
from core.sync.engine import _event_ids
from core.sync.hashing import ContentHasher, content_hash
from core.sync.types import OccurrenceKey, RemoteOccurrence, Status

START = datetime(2026, 3, 29, 9, 30, tzinfo=UTC)
tricky = st.sampled_from(list('ab "\\/\t\r\n\x00\x1f\x7f\u2028é€😀'))
texts = st.text(alphabet=tricky, max_size=12) | st.text(max_size=30)
occurrences = st.builds(
    RemoteOccurrence,
    key=st.builds(OccurrenceKey, texts, st.sampled_from(["", "2026-03-29T09:30:00+00:00"])),
    start=st.sampled_from([START, START.astimezone(timezone(timedelta(hours=-5))), START.replace(microsecond=7)]),
    end=st.sampled_from([START + timedelta(minutes=50), START + timedelta(days=1)]),
    status=st.sampled_from(list(Status)),
    all_day=st.booleans(),
    timezone=st.none() | st.sampled_from(["Europe/Madrid", "", 'Odd "zone"']),
    title=texts,
    description=texts,
    location=texts,
    url=texts,
    conference_url=texts,
    attendees=st.lists(texts, max_size=3).map(tuple),
)
# The hash keys of the engine are 32 bytes; HMAC treats longer keys differently (hashed first).
keys = st.binary(min_size=32, max_size=32) | st.binary(max_size=100)


@given(occ=occurrences, key=keys)
def test_the_fast_content_hash_is_the_stored_hash(occ: RemoteOccurrence, key: bytes) -> None:
    start_iso, end_iso = occ.start.astimezone(UTC).isoformat(), occ.end.astimezone(UTC).isoformat()
    assert ContentHasher(key)(occ, start_iso, end_iso) == content_hash(occ, key)


_KEY = os.urandom(32)
CIPHER = OwnerCipher(Owner("therapist", 1), os.urandom(16), AESGCM(_KEY), _KEY)


@given(occ=occurrences, video_url=st.none() | texts)
def test_fast_sealed_content_reads_back_as_the_content(occ: RemoteOccurrence, video_url: str | None) -> None:
    blob = seal_occurrence(CIPHER, 7, occ, video_url)
    expected = OccurrenceContent.of(occ, video_url)
    assert unseal(CIPHER, 7, occ.key, blob) == expected
    # The same plaintext as the plain path: one format at rest, whichever path wrote it.
    plain = seal(CIPHER, 7, occ.key, expected)
    context = f"occurrences.content|7|{occ.key.ical_uid}|{occ.key.recurrence_id}"
    assert CIPHER.decrypt(blob, context) == CIPHER.decrypt(plain, context)


def test_a_page_of_event_ids_are_distinct_version_4_uuids() -> None:
    ids = _event_ids(2500)
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # The variant digit takes all four values it may (its two random bits are kept).
    assert {text[19] for text in ids} == set("89ab")
