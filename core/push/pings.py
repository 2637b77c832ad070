"""Acting on a push ping at most once per message: re-deliveries are recognised by their number.

Google numbers the messages of a channel (``X-Goog-Message-Number``, reference/providers.md 1.5):
the numbers grow (not one by one), and a delivery Google retries (after a 5xx or a timeout on our
side) or sends twice carries the number it had. So a ping numbered no higher than the highest one
already acted on for that channel needs no sync: the sync requested for that higher number starts
after it arrived, so it lists whatever the older or repeated message announced.

:func:`accept_ping_in` verifies the ping and claims its number with a conditional ``UPDATE`` (two
web processes given the same delivery at once see it new exactly once), in the caller's
transaction, which also requests the sync: when that request fails, the claim rolls back with it,
so Google's retry of the delivery is acted on rather than taken for a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Table, bindparam, or_, update
from sqlalchemy.orm import Session

from core.push.models import PushChannel
from core.push.service import GenuineChannel, genuine_channel
from core.store.db import Store

__all__ = [
    "AcceptedPing",
    "accept_ping_in",
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
    """Verify a ping (``core.push.verify_ping``'s rules) and claim its message number in the caller's
    transaction; None when not genuine. A ping without a number is never a replay and claims nothing.

    The claim commits (or rolls back) with whatever the caller does next, e.g. the sync request.
    """
    genuine = genuine_channel(
        session, store, provider, channel_id=channel_id, token=token, resource_id=resource_id, now=now
    )
    if genuine is None:
        return None
    channel, backoff_until, last_sync_at = genuine
    if message_number is None:
        return AcceptedPing(channel.connection_id, False, backoff_until, last_sync_at)
    claimed = session.execute(_CLAIM_NUMBER, {"channel_pk": channel.id, "number": message_number})
    replay = claimed.rowcount == 0  # type: ignore[attr-defined]
    return AcceptedPing(channel.connection_id, replay, backoff_until, last_sync_at)


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
