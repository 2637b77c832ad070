"""Record, list, verify and retire push channels (no provider knowledge, no HTTP)."""

from __future__ import annotations

import hmac
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import NamedTuple

from sqlalchemy import Table, bindparam, delete, select, update
from sqlalchemy.orm import Session

from core.crypto import DecryptionError, Owner
from core.push.models import PushChannel
from core.store.db import Store
from core.store.models import Connection

__all__ = [
    "STOPPED_GRACE",
    "ChannelOfPing",
    "ChannelView",
    "GenuineChannel",
    "PingCredentials",
    "channels_of",
    "extend_channel",
    "forget_channel",
    "genuine_channel",
    "genuine_channels",
    "live_channels",
    "mark_stopped",
    "new_channel_token",
    "prune_stopped",
    "record_channel",
    "verify_ping",
]

log = logging.getLogger(__name__)

# Providers keep delivering for a moment after a channel was stopped (Google: "notifications may
# still arrive briefly", google-api-nodejs-client#1402). Those late pings are still genuine.
STOPPED_GRACE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class ChannelView:
    """A channel without its secret."""

    connection_id: int
    provider: str
    channel_id: str
    resource_id: str
    expires_at: datetime
    stopped_at: datetime | None


def _view(row: PushChannel) -> ChannelView:
    return ChannelView(row.connection_id, row.provider, row.channel_id, row.resource_id, row.expires_at, row.stopped_at)


def _token_context(channel_id: str) -> str:
    return f"push_channels.token|{channel_id}"


def _owner(session: Session, connection_id: int) -> Owner:
    therapist_id = session.scalar(select(Connection.therapist_id).where(Connection.id == connection_id))
    if therapist_id is None:
        raise LookupError(f"no connection with id {connection_id}")
    return Owner("therapist", therapist_id)


def new_channel_token() -> str:
    """A fresh channel secret: 256 random bits, URL-safe (Google allows up to 256 characters)."""
    return secrets.token_urlsafe(32)


def record_channel(
    store: Store,
    connection_id: int,
    provider: str,
    *,
    channel_id: str,
    resource_id: str,
    token: str,
    expires_at: datetime,
) -> None:
    """Remember a channel the provider opened; its token is encrypted, bound to the channel id."""
    with store.session() as session:
        cipher = store.keyring.cipher(session, _owner(session, connection_id))
        session.add(
            PushChannel(
                connection_id=connection_id,
                provider=provider,
                channel_id=channel_id,
                resource_id=resource_id,
                token=cipher.encrypt(token.encode(), _token_context(channel_id)),
                expires_at=expires_at,
            )
        )


def verify_ping(
    store: Store, provider: str, *, channel_id: str, token: str | None, resource_id: str | None, now: datetime
) -> int | None:
    """The connection a ping is for, or None when it is not genuine.

    Genuine means: a channel of ``provider`` we opened, not expired, not stopped for longer than
    :data:`STOPPED_GRACE`, its connection not removed, the same resource id, and the same token
    (compared in constant time). The caller logs a refusal; nothing here reveals which check failed
    to the sender.
    """
    with store.session() as session:
        channel = genuine_channel(
            session, store, provider, channel_id=channel_id, token=token, resource_id=resource_id, now=now
        )
        return None if channel is None else channel.channel.connection_id


class ChannelOfPing(NamedTuple):
    """A channel row as a ping's checks need it, with its connection's owner and sync state."""

    id: int
    connection_id: int
    channel_id: str
    resource_id: str
    token: bytes
    expires_at: datetime
    stopped_at: datetime | None
    last_message_number: int | None
    therapist_id: int
    removed_at: datetime | None
    backoff_until: datetime | None
    last_sync_at: datetime | None


class GenuineChannel(NamedTuple):
    """A verified ping's channel, with its connection's sync state read in the same query (the
    webhook decides when to sync from it without a second round trip)."""

    channel: ChannelOfPing
    backoff_until: datetime | None
    last_sync_at: datetime | None


class PingCredentials(NamedTuple):
    """What a ping claims to be: its channel, the channel's secret, the watched resource."""

    channel_id: str
    token: str | None
    resource_id: str | None
    received_at: datetime


# Built once: every push runs it, and building the expression (columns compared, joined, coerced)
# was a third of the ping's own CPU in the web process (benchmarks/README.md, session 8). Columns
# of the tables rather than mapped entities: no ORM loading per row.
_T: Table = PushChannel.__table__  # type: ignore[assignment]
_C: Table = Connection.__table__  # type: ignore[assignment]
_CHANNELS_OF_PINGS = (
    select(
        _T.c.id,
        _T.c.connection_id,
        _T.c.channel_id,
        _T.c.resource_id,
        _T.c.token,
        _T.c.expires_at,
        _T.c.stopped_at,
        _T.c.last_message_number,
        _C.c.therapist_id,
        _C.c.removed_at,
        _C.c.backoff_until,
        _C.c.last_sync_at,
    )
    .join(_C, _C.c.id == _T.c.connection_id)
    .where(_T.c.channel_id.in_(bindparam("channel_ids", expanding=True)), _T.c.provider == bindparam("provider"))
)


def genuine_channels(
    session: Session, store: Store, provider: str, pings: Sequence[PingCredentials]
) -> list[GenuineChannel | None]:
    """:func:`verify_ping` for several pings inside the caller's transaction, in one query: for each
    ping, its channel row, or None when the ping is not genuine. Each channel's secret is
    decrypted once however many of the pings name it."""
    wanted = sorted({p.channel_id for p in pings if p.channel_id and p.token and p.resource_id})
    if not wanted:
        return [None] * len(pings)
    rows = {
        row.channel_id: row
        for row in map(
            ChannelOfPing._make, session.execute(_CHANNELS_OF_PINGS, {"channel_ids": wanted, "provider": provider})
        )
    }
    decrypted: dict[str, bytes | None] = {}  # channel id -> its secret (None: undecryptable)
    verdicts: list[GenuineChannel | None] = []
    for ping in pings:
        row = rows.get(ping.channel_id)
        if row is None or not ping.token or not ping.resource_id:
            verdicts.append(None)
            continue
        verdicts.append(_verified(session, store, row, ping.token, ping.resource_id, ping.received_at, decrypted))
    return verdicts


def _verified(
    session: Session,
    store: Store,
    row: ChannelOfPing,
    token: str,
    resource_id: str,
    now: datetime,
    decrypted: dict[str, bytes | None],
) -> GenuineChannel | None:
    if row.removed_at is not None or row.expires_at + STOPPED_GRACE <= now:
        return None
    if row.stopped_at is not None and row.stopped_at + STOPPED_GRACE <= now:
        return None
    if row.channel_id in decrypted:
        expected = decrypted[row.channel_id]
    else:
        try:
            expected = store.keyring.decrypt(
                session, Owner("therapist", row.therapist_id), row.token, _token_context(row.channel_id)
            )
        except DecryptionError:
            log.warning("push channel %s: its token cannot be decrypted", row.channel_id)
            expected = None
        decrypted[row.channel_id] = expected
    if expected is None:
        return None
    token_ok = hmac.compare_digest(expected, token.encode())
    resource_ok = hmac.compare_digest(row.resource_id.encode(), resource_id.encode())
    return GenuineChannel(row, row.backoff_until, row.last_sync_at) if token_ok and resource_ok else None


def genuine_channel(
    session: Session,
    store: Store,
    provider: str,
    *,
    channel_id: str,
    token: str | None,
    resource_id: str | None,
    now: datetime,
) -> GenuineChannel | None:
    """:func:`verify_ping` inside the caller's transaction: the channel row, or None when not genuine."""
    return genuine_channels(session, store, provider, [PingCredentials(channel_id, token, resource_id, now)])[0]


def live_channels(store: Store, provider: str | None = None) -> list[ChannelView]:
    """Every channel (of ``provider``) not stopped yet, expired ones included."""
    with store.session() as session:
        query = select(PushChannel).where(PushChannel.stopped_at.is_(None))
        if provider is not None:
            query = query.where(PushChannel.provider == provider)
        rows = session.scalars(query.order_by(PushChannel.connection_id, PushChannel.expires_at))
        return [_view(r) for r in rows]


def channels_of(store: Store, connection_id: int) -> list[ChannelView]:
    """Every channel row of one connection, stopped ones included, oldest expiry first."""
    with store.session() as session:
        rows = session.scalars(
            select(PushChannel).where(PushChannel.connection_id == connection_id).order_by(PushChannel.expires_at)
        )
        return [_view(r) for r in rows]


def extend_channel(store: Store, channel_id: str, expires_at: datetime) -> None:
    """Record a channel's new expiry after the provider renewed it in place (Graph's PATCH of a subscription)."""
    with store.session() as session:
        session.execute(update(PushChannel).where(PushChannel.channel_id == channel_id).values(expires_at=expires_at))


def mark_stopped(store: Store, channel_id: str, now: datetime) -> None:
    """Record that a channel was stopped (or given up on); late pings are accepted for a grace period."""
    with store.session() as session:
        session.execute(
            update(PushChannel)
            .where(PushChannel.channel_id == channel_id, PushChannel.stopped_at.is_(None))
            .values(stopped_at=now)
        )


def forget_channel(store: Store, channel_id: str) -> None:
    """Delete a channel row (a watch the provider refused to confirm, say)."""
    with store.session() as session:
        session.execute(delete(PushChannel).where(PushChannel.channel_id == channel_id))


def prune_stopped(store: Store, before: datetime) -> int:
    """Delete channels stopped before ``before``; how many went."""
    with store.session() as session:
        result = session.execute(
            delete(PushChannel).where(PushChannel.stopped_at.is_not(None), PushChannel.stopped_at < before)
        )
        count: int = result.rowcount  # type: ignore[attr-defined]
        return count
