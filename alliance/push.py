"""Keeping push channels open: one live channel per connection whose provider can push.

The periodic :data:`PUSH_RENEW` job (every minute, when ALLIANCE_PUBLIC_URL is set):

- opens a channel for each connection of a PUSH provider that has none, or whose newest channel
  expires within :data:`RENEW_BEFORE`; the new channel is stored (token encrypted) *before* the
  old one is stopped, so there is always one listening, and for a moment two (Google tolerates the
  overlap, and a ping on either is genuine);
- stops the older channels, and channels of connections that were removed;
- forgets channels stopped long ago;
- asks for one sync of a connection whose new channel is its only one listening (a new
  connection, or one whose channels lapsed): nothing announced the changes made between its last
  sync and the channel's opening, and without that sync they would wait for the reconciliation
  sweep. A renewal overlaps the old channel, which was listening all along: no sync.

A failure for one connection is logged (without secrets) and retried on the next run; the
reconciliation sync keeps the mirror current meanwhile. A provider that says "slow down"
(a rate limit or its quota, ``integrations.base.throttle.Throttled``) pauses that connection's
upkeep instead, growing with each refusal in a row (``core.push.pause``): the job does not ask
again every minute, and connections refused together do not come back together.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from alliance.providers import context_for, provider_for, registry
from alliance.reconcile import request_sync
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.mirror import (
    ConnectionView,
    get_connection,
    list_connections,
    therapist_timezone,
    update_connection_settings,
)
from core.push import (
    ChannelView,
    live_channels,
    mark_stopped,
    new_channel_token,
    prune_stopped,
    record_channel,
)
from core.push.pause import clear_pause, pause_upkeep, paused_connections
from core.redaction import describe_error
from core.store import Store
from core.sync import SourceError
from integrations.base import Capability, InvalidSettings, ProviderError
from integrations.base.push import PushSource
from integrations.base.throttle import Throttled

__all__ = ["CHANNEL_TTL", "PUSH_RENEW", "RENEW_BEFORE", "PushReport", "maintain_channels", "webhook_address"]

log = logging.getLogger(__name__)

PUSH_RENEW = "push.renew"
# Asked of the provider; Google caps Calendar channels at about a week and answers with the real
# expiry, which is what renewal goes by.
CHANNEL_TTL = timedelta(days=7)
# Renew this long before expiry: a day leaves room for a provider or worker outage.
RENEW_BEFORE = timedelta(days=1)
PRUNE_AFTER = timedelta(days=1)
# Every minute: a new connection gets its channel soon after it is added; a run where every
# channel is far from expiry costs two queries and no provider call.
RENEW_EVERY = timedelta(minutes=1)


@dataclass
class PushReport:
    opened: list[int] = field(default_factory=list)  # connection ids
    stopped: list[str] = field(default_factory=list)  # channel ids
    failed: list[int] = field(default_factory=list)  # connection ids
    synced: list[int] = field(default_factory=list)  # connection ids: a sync asked after a first channel
    paused: dict[int, datetime] = field(default_factory=dict)  # connection id -> upkeep resumes at


def webhook_address(settings: Settings, provider: str) -> str | None:
    """Where ``provider`` should deliver pings, or None when the service has no public URL."""
    if settings.public_url is None:
        return None
    return f"{settings.public_url}/webhooks/{provider}"


def _pushes(provider: str) -> bool:
    try:
        return Capability.PUSH in registry().get(provider).capabilities
    except ProviderError:
        return False


def _source(store: Store, settings: Settings, connection: ConnectionView, now: datetime) -> PushSource:
    context = context_for(settings, therapist_timezone(store, connection.therapist_id), now)

    def save(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    source = provider_for(connection, context, save_settings=save)
    if not isinstance(source, PushSource):
        raise ProviderError(f"provider {connection.provider!r} declares push but cannot open channels")
    return source


def _stop(source: PushSource | None, store: Store, channel: ChannelView, now: datetime, report: PushReport) -> None:
    if source is not None:
        source.close_channel(channel.channel_id, channel.resource_id)
    mark_stopped(store, channel.channel_id, now)
    report.stopped.append(channel.channel_id)


def _needs_work(live: list[ChannelView], now: datetime) -> bool:
    """No channel far from expiry, or more than one live: the provider must be called."""
    current = [c for c in live if c.expires_at - now > RENEW_BEFORE]
    return not current or len(live) > 1


def _maintain(
    store: Store,
    settings: Settings,
    job_registry: JobRegistry,
    connection: ConnectionView,
    live: list[ChannelView],
    address: str,
    now: datetime,
    report: PushReport,
) -> None:
    current = [c for c in live if c.expires_at - now > RENEW_BEFORE]
    source = _source(store, settings, connection, now)
    if not current:
        channel_id = str(uuid.uuid4())
        token = new_channel_token()
        opened = source.open_channel(channel_id=channel_id, address=address, token=token, expires_at=now + CHANNEL_TTL)
        try:
            record_channel(
                store,
                connection.id,
                connection.provider,
                channel_id=opened.channel_id,
                resource_id=opened.resource_id,
                token=token,
                expires_at=opened.expires_at,
            )
        except Exception:
            # Not stored means its pings would be refused: do not leave it open at the provider.
            source.close_channel(opened.channel_id, opened.resource_id)
            raise
        report.opened.append(connection.id)
        keep = opened.channel_id
        if not any(c.expires_at > now for c in live):
            # Nothing was listening until now: what changed since the last sync was never pinged.
            request_sync(store, job_registry, connection.id, now)
            report.synced.append(connection.id)
    else:
        keep = max(current, key=lambda c: c.expires_at).channel_id
    for old in live:
        if old.channel_id != keep:
            _stop(source, store, old, now, report)


def maintain_channels(store: Store, settings: Settings, now: datetime, job_registry: JobRegistry) -> PushReport:
    """One run of the renewal job (see the module docstring); ``job_registry`` names the sync job
    that a connection's first channel asks for."""
    report = PushReport()
    # Cheap in the usual case (every channel far from expiry): one listing without decrypting
    # anything, one query for the live channels, and no provider call.
    connections = [c for c in list_connections(store, with_settings=False) if _pushes(c.provider)]
    live_by_connection: dict[int, list[ChannelView]] = {}
    by_push: dict[str, bool] = {}
    for channel in live_channels(store):
        # Only channels of PUSH providers are this job's: Outlook keeps its subscriptions itself
        # (alliance.outlook_push renews them in place), in the same table.
        if by_push.setdefault(channel.provider, _pushes(channel.provider)):
            live_by_connection.setdefault(channel.connection_id, []).append(channel)
    by_provider: dict[str, str | None] = {}
    paused = paused_connections(store, now)
    for listed in connections:
        address = by_provider.setdefault(listed.provider, webhook_address(settings, listed.provider))
        live = live_by_connection.get(listed.id, [])
        if address is None or not _needs_work(live, now) or listed.id in paused:
            continue
        connection = get_connection(store, listed.therapist_id, listed.id)  # now with its credentials
        if connection is None:
            continue
        try:
            _maintain(store, settings, job_registry, connection, live, address, now, report)
        except Throttled as exc:
            until = pause_upkeep(
                store, connection.id, now, quota=exc.quota, reason=describe_error(exc), retry_after=exc.retry_after
            )
            report.paused[connection.id] = until
            log.warning(
                "push channel of connection %s not renewed: %s; next try at %s",
                connection.id,
                describe_error(exc),
                until.isoformat(timespec="minutes"),
            )
        except (SourceError, InvalidSettings, ProviderError) as exc:
            report.failed.append(connection.id)
            log.warning("push channel of connection %s not renewed: %s", connection.id, describe_error(exc))
        else:
            clear_pause(store, connection.id)
    # Channels of connections that are gone (removed: their credentials are forgotten, so they
    # cannot be stopped at the provider; they lapse there, and their pings are refused here).
    known = {c.id for c in connections}
    for connection_id, channels in live_by_connection.items():
        if connection_id not in known:
            for channel in channels:
                _stop(None, store, channel, now, report)
    prune_stopped(store, now - PRUNE_AFTER)
    if report.opened or report.stopped or report.failed or report.paused:
        log.info(
            "push channels: %d opened (%d first, sync asked), %d stopped, %d failed, %d paused",
            len(report.opened),
            len(report.synced),
            len(report.stopped),
            len(report.failed),
            len(report.paused),
        )
    return report
