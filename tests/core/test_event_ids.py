"""Outbox event ids are random version-4 UUIDs written the way uuid.uuid4() writes them."""

from __future__ import annotations

import uuid

from core.sync.engine import _event_id


def test_event_ids_are_distinct_version_4_uuids() -> None:
    ids = [_event_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, text)
    # Every random bit varies: no digit position outside the version/variant ones is constant.
    for position in set(range(36)) - {8, 13, 14, 18, 19, 23}:
        assert len({text[position] for text in ids}) > 1
