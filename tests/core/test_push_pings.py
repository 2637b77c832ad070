"""Push message numbers (core.push.pings): a re-delivered ping is recognised as one.

A ping whose sync request fails is not lost: tests/integrations/test_google_push.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.mirror import add_connection, ensure_therapist
from core.push import new_channel_token, record_channel
from core.push.pings import AcceptedPing, accept_ping_in, parse_message_number
from core.store import Store

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


@pytest.fixture
def channel(store: Store) -> tuple[int, str]:
    therapist = ensure_therapist(store, "ana@example.org")
    connection = add_connection(store, therapist, "google", "work", {})
    token = new_channel_token()
    record_channel(
        store, connection, "google", channel_id="chan-1", resource_id="res-1", token=token, expires_at=T0 + timedelta(7)
    )
    return connection, token


def _ping(store: Store, token: str, number: int | None) -> AcceptedPing | None:
    with store.session() as session:
        return accept_ping_in(
            session,
            store,
            "google",
            channel_id="chan-1",
            token=token,
            resource_id="res-1",
            message_number=number,
            now=T0,
        )


def test_a_message_number_is_acted_on_once_and_older_ones_are_replays(store: Store, channel: tuple[int, str]) -> None:
    connection, token = channel
    assert _ping(store, token, 7) == AcceptedPing(connection, False)
    assert _ping(store, token, 7) == AcceptedPing(connection, replay=True)  # Google re-delivered it
    assert _ping(store, token, 3) == AcceptedPing(connection, replay=True)  # older, arrived late
    assert _ping(store, token, 12) == AcceptedPing(connection, False)
    assert _ping(store, token, None) == AcceptedPing(connection, False)  # no number: always acted on


def test_a_forged_ping_claims_no_number(store: Store, channel: tuple[int, str]) -> None:
    connection, token = channel
    assert _ping(store, token + "x", 99) is None
    assert _ping(store, token, 8) == AcceptedPing(connection, False)  # the forgery did not take 99


@pytest.mark.parametrize(
    ("header", "number"),
    [("17", 17), (" 4 ", 4), (None, None), ("", None), ("-3", None), ("1e3", None), ("9" * 19, None)],
)
def test_message_number_header(header: str | None, number: int | None) -> None:
    assert parse_message_number(header) == number


def test_ping_started_syncs_are_spaced_but_a_ping_after_a_quiet_spell_syncs_at_once(
    store: Store, channel: tuple[int, str]
) -> None:
    from sqlalchemy import update

    from core.store.models import Connection

    connection, token = channel
    spacing = timedelta(seconds=1)
    first = _ping(store, token, 1)
    assert first is not None and first.sync_delay(T0, spacing) == timedelta(0)  # never synced: at once
    with store.session() as session:  # a sync started 300 ms before the next ping
        session.execute(
            update(Connection).where(Connection.id == connection).values(last_sync_at=T0 - timedelta(milliseconds=300))
        )
    burst = _ping(store, token, 2)
    assert burst is not None and burst.last_sync_at == T0 - timedelta(milliseconds=300)
    assert burst.sync_delay(T0, spacing) == timedelta(milliseconds=700)  # due one spacing after that start
    assert burst.sync_delay(T0 + timedelta(seconds=5), spacing) == timedelta(0)  # a quiet spell later: at once
    assert burst.sync_delay(T0, timedelta(0)) == timedelta(0)  # spacing off
