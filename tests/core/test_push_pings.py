"""Push message numbers (core.push.pings): a re-delivered ping is recognised as one.

A ping whose sync request fails is not lost: tests/integrations/test_google_push.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update

from core.mirror import add_connection, ensure_therapist
from core.push import new_channel_token, record_channel
from core.push.models import PushChannel
from core.push.pings import AcceptedPing, NumberedPing, accept_ping_in, accept_pings_in, parse_message_number
from core.push.service import PingCredentials
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


# -- pings acted on together (a webhook's batch) --------------------------------------------------

CHANNELS = ("chan-a", "chan-b")
_ping_in_batch = st.tuples(
    st.sampled_from(CHANNELS),
    st.sampled_from(["genuine", "wrong token", "wrong resource"]),
    st.none() | st.integers(min_value=0, max_value=12),
)


@pytest.fixture
def two_channels(store: Store) -> dict[str, tuple[int, str]]:
    therapist = ensure_therapist(store, "ana@example.org")
    made = {}
    for name in CHANNELS:
        connection = add_connection(store, therapist, "google", name, {})
        token = new_channel_token()
        record_channel(
            store,
            connection,
            "google",
            channel_id=name,
            resource_id=f"res-{name}",
            token=token,
            expires_at=T0 + timedelta(7),
        )
        made[name] = (connection, token)
    return made


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=st.none() | st.integers(min_value=0, max_value=8), batch=st.lists(_ping_in_batch, min_size=1, max_size=8))
def test_a_batch_of_pings_is_acted_on_as_the_same_pings_one_after_another_would_be(
    store: Store, two_channels: dict[str, tuple[int, str]], before: int | None, batch: list[tuple[str, str, int | None]]
) -> None:
    """Against the rules applied ping by ping in arrival order: the same pings are refused, the
    same calendars get a sync, the same message number is kept per channel, a ping that is new
    in order is new in the batch, and one numbered no higher than what was acted on before the
    batch is a replay. (Within a batch, a lower number after a higher one still shares the sync
    the higher one asked for; the batch does not call it a replay.)"""
    with store.session() as session:
        session.execute(update(PushChannel).values(last_message_number=before))
    pings = []
    for name, kind, number in batch:
        token = two_channels[name][1] + ("x" if kind == "wrong token" else "")
        resource = f"res-{name}" + ("x" if kind == "wrong resource" else "")
        pings.append(NumberedPing(PingCredentials(name, token, resource, T0), number))
    with store.session() as session:
        accepted = accept_pings_in(session, store, "google", pings)

    # The rules one ping after another.
    highest = dict.fromkeys(CHANNELS, before)
    in_order: list[bool | None] = []  # None: refused; else whether it is a replay
    for name, kind, number in batch:
        if kind != "genuine":
            in_order.append(None)
        elif number is None:
            in_order.append(False)
        elif highest[name] is None or number > highest[name]:  # type: ignore[operator]
            highest[name] = number
            in_order.append(False)
        else:
            in_order.append(True)

    for (name, _, number), got, expected in zip(batch, accepted, in_order, strict=True):
        assert (got is None) == (expected is None)
        if got is None:
            continue
        assert got.connection_id == two_channels[name][0]
        if expected is False:
            assert got.replay is False
        if number is not None and before is not None and number <= before:
            assert got.replay is True
    for name in CHANNELS:
        synced_in_order = any(e is False for (n, _, _), e in zip(batch, in_order, strict=True) if n == name)
        synced = any(a is not None and not a.replay for (n, _, _), a in zip(batch, accepted, strict=True) if n == name)
        assert synced == synced_in_order
    with store.session() as session:
        kept = dict(session.execute(select(PushChannel.channel_id, PushChannel.last_message_number)).all())
    assert kept == highest
