"""Outlook change notifications, composed: keep one subscription per connection alive, and turn
what Graph posts into syncs.

- :func:`maintain_subscriptions` (a periodic job, hourly) creates a subscription for every
  Outlook connection that has none, and renews one whose expiry is less than
  :data:`RENEW_WHEN_LEFT` away: with a lifetime just under 4,230 minutes, that is one renewal a
  day, two days ahead. A subscription Graph no longer knows is made again. A failure is logged
  with the connection id and raised at the end, so the job runner retries it and parks it (visible
  in ``alliance jobs failed``) if it keeps failing: never silently lost.
- The notification URL carries the connection id (``?c=<id>``; Graph keeps query strings); the
  webhook checks the subscription id and the ``clientState`` stored (encrypted) with that
  connection's settings before anything happens.
- :func:`request_sync` queues one ``outlook.sync`` job per connection under a queueing lock, so a
  burst of notifications (or notifications during a sync) becomes a single follow-up sync.
- Lifecycle events: ``reauthorizationRequired`` reauthorizes (renews when Graph refuses),
  ``subscriptionRemoved`` subscribes again and syncs, ``missed`` syncs.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from alliance.providers import context_for, provider_for
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.jobs.queue import defer_job
from core.mirror import ConnectionView, list_connections, therapist_timezone, update_connection_settings
from core.store import Store
from core.sync import SourceError
from integrations.outlook import OutlookProvider
from integrations.outlook.subscriptions import LIFETIME, RENEW_EVERY, SubscriptionGone, Subscriptions, new_client_state

log = logging.getLogger(__name__)

PROVIDER = "outlook"
SYNC_JOB = "outlook.sync"
LIFECYCLE_JOB = "outlook.lifecycle"
MAINTAIN_JOB = "outlook.subscriptions"
MAINTAIN_EVERY = timedelta(hours=1)
RENEW_WHEN_LEFT = LIFETIME - RENEW_EVERY


def notification_urls(public_url: str, connection_id: int) -> tuple[str, str]:
    """(notification URL, lifecycle URL) of one connection."""
    return (
        f"{public_url}/webhooks/outlook?c={connection_id}",
        f"{public_url}/webhooks/outlook/lifecycle?c={connection_id}",
    )


def request_sync(store: Store, registry: JobRegistry, connection_id: int, now: datetime) -> bool:
    """Queue one sync of the connection; False when one is already waiting (it absorbs this one)."""
    return defer_job(
        store,
        registry,
        SYNC_JOB,
        {"connection_id": connection_id},
        run_at=now,
        queueing_lock=f"{SYNC_JOB}:{connection_id}",
    )


def _outlook_connections(store: Store) -> list[ConnectionView]:
    return [c for c in list_connections(store) if c.provider == PROVIDER]


def _provider(store: Store, settings: Settings, connection: ConnectionView, now: datetime) -> OutlookProvider:
    def save(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    context = context_for(settings, therapist_timezone(store, connection.therapist_id), now)
    provider = provider_for(connection, context, save_settings=save)
    if not isinstance(provider, OutlookProvider):
        raise TypeError(f"connection {connection.id} is not an Outlook connection")
    return provider


def _store_subscription(
    store: Store, provider: OutlookProvider, connection_id: int, record: dict[str, str] | None
) -> None:
    provider.settings = dataclasses.replace(provider.settings, subscription=record)
    update_connection_settings(store, connection_id, provider.settings.as_dict())


def _subscribe(store: Store, settings: Settings, provider: OutlookProvider, connection_id: int, now: datetime) -> None:
    if settings.public_url is None:
        return
    secret = new_client_state()
    notify, lifecycle = notification_urls(settings.public_url, connection_id)
    made = Subscriptions(provider.client).create(notify, lifecycle, secret, now)
    _store_subscription(
        store,
        provider,
        connection_id,
        {"id": made.id, "client_state": secret, "expires_at": made.expires_at.isoformat()},
    )
    log.info("Outlook subscription made for connection %s", connection_id)


def maintain_connection(store: Store, settings: Settings, connection: ConnectionView, now: datetime) -> None:
    """Make sure one connection has a live subscription that lasts at least another day."""
    provider = _provider(store, settings, connection, now)
    current = provider.settings.subscription
    if current is None:
        _subscribe(store, settings, provider, connection.id, now)
        return
    if datetime.fromisoformat(current["expires_at"]) - now > RENEW_WHEN_LEFT:
        return
    try:
        renewed = Subscriptions(provider.client).renew(current["id"], now)
    except SubscriptionGone:
        log.info("Outlook subscription of connection %s is gone; subscribing again", connection.id)
        _subscribe(store, settings, provider, connection.id, now)
        return
    _store_subscription(store, provider, connection.id, {**current, "expires_at": renewed.expires_at.isoformat()})


def maintain_subscriptions(store: Store, settings: Settings, now: datetime | None = None) -> int:
    """Create or renew every Outlook connection's subscription; returns how many connections failed."""
    if settings.public_url is None:
        return 0
    now = now or datetime.now(UTC)
    failed: list[int] = []
    for connection in _outlook_connections(store):
        try:
            maintain_connection(store, settings, connection, now)
        except (SourceError, ValueError) as exc:  # ValueError: InvalidSettings
            log.warning("Outlook subscription of connection %s not renewed: %s", connection.id, exc)
            failed.append(connection.id)
    if failed:
        raise SourceError(f"Outlook subscriptions of connection(s) {failed} could not be made or renewed")
    return 0


def handle_lifecycle(store: Store, settings: Settings, registry: JobRegistry, connection_id: int, event: str) -> None:
    """Act on one verified lifecycle event of a connection's subscription."""
    now = datetime.now(UTC)
    connection = next((c for c in _outlook_connections(store) if c.id == connection_id), None)
    if connection is None:
        return  # removed meanwhile
    provider = _provider(store, settings, connection, now)
    current = provider.settings.subscription
    if event == "reauthorizationRequired" and current is not None:
        try:
            Subscriptions(provider.client).reauthorize(current["id"])
        except SubscriptionGone:
            _subscribe(store, settings, provider, connection_id, now)
        return
    if event == "subscriptionRemoved":
        _subscribe(store, settings, provider, connection_id, now)
    # subscriptionRemoved and missed: notifications may have been lost; a delta sync catches up.
    request_sync(store, registry, connection_id, now)


class SyncBusy(SourceError):
    """Another sync of the connection holds it; the job runner tries again shortly."""


def register_jobs(registry: JobRegistry, settings: Settings) -> None:
    """The Outlook push jobs: coalesced syncs, lifecycle events, and (with a public URL) the hourly upkeep."""
    from alliance.syncing import sync_one  # alliance.syncing is heavier; only the worker needs it

    def outlook_sync(store: Store, connection_id: int) -> None:
        connection = next((c for c in _outlook_connections(store) if c.id == connection_id), None)
        if connection is None:
            return  # removed since the notification came
        outcome = sync_one(store, settings, connection)
        if outcome.failure == "busy":
            # The running sync may have read the delta before this change: run once more after it.
            raise SyncBusy(f"connection {connection_id} is being synced; trying again")

    def outlook_lifecycle(store: Store, connection_id: int, event: str) -> None:
        handle_lifecycle(store, settings, registry, connection_id, event)

    def outlook_subscriptions(store: Store) -> None:
        maintain_subscriptions(store, settings)

    registry.add_job(SYNC_JOB, outlook_sync)
    registry.add_job(LIFECYCLE_JOB, outlook_lifecycle)
    if settings.public_url is not None:  # without a public URL Graph cannot reach us: no subscriptions
        registry.add_periodic(MAINTAIN_JOB, MAINTAIN_EVERY, outlook_subscriptions)


__all__ = [
    "LIFECYCLE_JOB",
    "MAINTAIN_EVERY",
    "MAINTAIN_JOB",
    "RENEW_WHEN_LEFT",
    "SYNC_JOB",
    "handle_lifecycle",
    "maintain_connection",
    "maintain_subscriptions",
    "notification_urls",
    "register_jobs",
    "request_sync",
]
