"""Acting on a push ping at most once per message: re-deliveries are recognised by their number.

Google numbers the messages of a channel (``X-Goog-Message-Number``, reference/providers.md 1.5):
the numbers grow (not one by one), and a delivery Google retries (after a 5xx or a timeout on our
side) or sends twice carries the number it had. So a ping numbered no higher than the highest one
already acted on for that channel needs no sync: the sync requested for that higher number starts
after it arrived, so it lists whatever the older or repeated message announced.

:func:`accept_pings_in` verifies pings and claims their numbers with a conditional ``UPDATE`` (two
web processes given the same delivery at once see it new exactly once), in the caller's
transaction, which also requests the sync: when that request fails, the claim rolls back with it,
so Google's retry of the delivery is acted on rather than taken for a duplicate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm import Session

from core.push.models import PushChannel
from core.push.service import GenuineChannel, PingCredentials, genuine_channel, genuine_channels
from core.store.db import Store

__all__ = [
    "AcceptedPing",
    "NumberedPing",
    "accept_ping_in",
    "accept_pings_in",
    "parse_message_number",
    "spaced_delay",
    "verified_channel",
]

_NO_DELAY = timedelta(0)


def spaced_delay(last_sync_at: datetime | None, now: datetime, spacing: timedelta) -> timedelta:
    """How long a ping's sync waits so that ping-started syncs of a calendar begin ``spacing`` apart.

    Spacing rather than a fixed debounce: a ping after a quiet spell (the usual case: one edit)
    syncs at once, and only a burst within ``spacing`` of the last sync waits for its turn, which
    all of that burst's pings then share.
    """
    if last_sync_at is None:
        return _NO_DELAY
    return max(_NO_DELAY, last_sync_at + spacing - now)


class NumberedPing(NamedTuple):
    """A ping as received: who it claims to be and its message number (None when it has none)."""

    credentials: PingCredentials
    message_number: int | None


@dataclass(frozen=True, slots=True)
class AcceptedPing:
    """A genuine ping: its connection, whether an equal or later message was already acted on, and
    the connection's ``backoff_until`` (core.sync.backoff) read in the same transaction, so asking
    for its sync needs no second one."""

    connection_id: int
    replay: bool
    backoff_until: datetime | None = None
    last_sync_at: datetime | None = None  # when the connection's last sync started

    def sync_delay(self, now: datetime, spacing: timedelta) -> timedelta:
        """:func:`spaced_delay` for this ping's connection."""
        return spaced_delay(self.last_sync_at, now, spacing)


def parse_message_number(value: str | None) -> int | None:
    """The header's message number, or None when absent or not a plain non-negative integer."""
    if value is None or not value.strip().isdigit() or len(value.strip()) > 18:
        return None
    return int(value.strip())


# Built once (every push runs it): a message number is claimed when it is above the last one. On
# the table, not the mapped class: an ORM-enabled UPDATE goes through SQLAlchemy's bulk-update
# machinery even without synchronising the session, 152 -> 89 us of CPU per claim on PostgreSQL.
_CHANNELS: Table = PushChannel.__table__  # type: ignore[assignment]
_CLAIM_NUMBER = (
    update(_CHANNELS)
    .where(
        _CHANNELS.c.id == bindparam("channel_pk"),
        or_(_CHANNELS.c.last_message_number.is_(None), _CHANNELS.c.last_message_number < bindparam("number")),
    )
    .values(last_message_number=bindparam("number"))
)


def accept_pings_in(
    session: Session, store: Store, provider: str, pings: Sequence[NumberedPing]
) -> list[AcceptedPing | None]:
    """Verify pings (``core.push.verify_ping``'s rules) and claim their message numbers in the
    caller's transaction: for each ping, what it is, or None when it is not genuine. The pings
    that arrived together (a webhook's batch) cost one query for their channels and one claim per
    channel, whatever their number.

    A channel claims the highest number among its genuine pings; a ping is a replay when its
    number is no higher than one already acted on before, or when that claim found a number as
    high already there. A ping without a number is never a replay and claims nothing. The claims
    commit (or roll back) with whatever the caller does next, e.g. the sync requests.
    """
    genuine = genuine_channels(session, store, provider, [p.credentials for p in pings])
    highest: dict[int, int] = {}  # channel row id -> the highest number its genuine pings carry
    for ping, channel in zip(pings, genuine, strict=True):
        if channel is not None and ping.message_number is not None:
            row_id = channel.channel.id
            highest[row_id] = max(highest.get(row_id, -1), ping.message_number)
    claimed = {
        row_id
        for row_id, number in sorted(highest.items())  # one lock order for every web process
        if session.execute(_CLAIM_NUMBER, {"channel_pk": row_id, "number": number}).rowcount  # type: ignore[attr-defined]
    }
    accepted: list[AcceptedPing | None] = []
    for ping, channel in zip(pings, genuine, strict=True):
        if channel is None:
            accepted.append(None)
            continue
        row = channel.channel
        number = ping.message_number
        replay = number is not None and (
            row.id not in claimed or (row.last_message_number is not None and number <= row.last_message_number)
        )
        accepted.append(AcceptedPing(row.connection_id, replay, channel.backoff_until, channel.last_sync_at))
    return accepted


def accept_ping_in(
    session: Session,
    store: Store,
    provider: str,
    *,
    channel_id: str,
    token: str | None,
    resource_id: str | None,
    message_number: int | None,
    now: datetime,
) -> AcceptedPing | None:
    """:func:`accept_pings_in` for one ping."""
    ping = NumberedPing(PingCredentials(channel_id, token, resource_id, now), message_number)
    return accept_pings_in(session, store, provider, [ping])[0]


def verified_channel(
    store: Store, provider: str, *, channel_id: str, token: str | None, resource_id: str | None, now: datetime
) -> GenuineChannel | None:
    """``core.push.verify_ping`` for a provider without message numbers (Outlook): the channel with
    its connection's backoff and last sync read in the same query, so spacing and backoff need no
    second transaction."""
    with store.session() as session:
        return genuine_channel(
            session, store, provider, channel_id=channel_id, token=token, resource_id=resource_id, now=now
        )
