"""Push channels (core.push): tokens encrypted at rest, pings verified by channel, token and resource."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from core.mirror import add_connection, ensure_therapist, remove_connection
from core.push import (
    STOPPED_GRACE,
    channels_of,
    live_channels,
    mark_stopped,
    new_channel_token,
    prune_stopped,
    record_channel,
    verify_ping,
)
from core.store import Store

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def channel(store: Store) -> tuple[int, int, str]:
    therapist = ensure_therapist(store, "ana@example.org")
    connection = add_connection(store, therapist, "google", "work", {})
    token = new_channel_token()
    record_channel(
        store,
        connection,
        "google",
        channel_id="chan-1",
        resource_id="res-1",
        token=token,
        expires_at=T0 + timedelta(days=7),
    )
    return therapist, connection, token


def _verify(
    store: Store, token: str | None, *, channel_id: str = "chan-1", resource_id: str = "res-1", now: datetime = T0
) -> int | None:
    return verify_ping(store, "google", channel_id=channel_id, token=token, resource_id=resource_id, now=now)


def test_a_genuine_ping_names_its_connection(store: Store, channel: tuple[int, int, str]) -> None:
    _, connection, token = channel
    assert _verify(store, token) == connection


def test_forged_or_stale_pings_are_refused(store: Store, channel: tuple[int, int, str]) -> None:
    _, _, token = channel
    assert _verify(store, token + "x") is None
    assert _verify(store, None) is None
    assert _verify(store, "") is None
    assert _verify(store, token, channel_id="chan-2") is None
    assert _verify(store, token, resource_id="res-2") is None
    assert verify_ping(store, "outlook", channel_id="chan-1", token=token, resource_id="res-1", now=T0) is None
    assert _verify(store, token, now=T0 + timedelta(days=7) + STOPPED_GRACE) is None  # expired


def test_a_stopped_channel_is_accepted_for_a_grace_period_only(store: Store, channel: tuple[int, int, str]) -> None:
    _, connection, token = channel
    mark_stopped(store, "chan-1", T0)
    assert live_channels(store, "google") == []
    assert _verify(store, token, now=T0 + STOPPED_GRACE - timedelta(seconds=1)) == connection
    assert _verify(store, token, now=T0 + STOPPED_GRACE) is None
    assert prune_stopped(store, T0 + timedelta(days=1)) == 1
    assert channels_of(store, connection) == []


def test_pings_for_a_removed_connection_are_refused(store: Store, channel: tuple[int, int, str]) -> None:
    therapist, connection, token = channel
    assert remove_connection(store, therapist, connection)
    assert _verify(store, token) is None


def test_the_token_is_never_stored_in_clear(store: Store, channel: tuple[int, int, str]) -> None:
    _, _, token = channel
    with store.engine.connect() as conn:
        stored = conn.execute(text("SELECT token FROM push_channels")).scalar_one()
    assert token.encode() not in bytes(stored)
    assert len(token) >= 43  # 256 bits, URL-safe base64
