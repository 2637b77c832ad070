"""Outlook change notifications, composed: keep one subscription per connection alive, and turn
what Graph posts into syncs.

- Subscriptions are push channels (``core.push``): the Graph subscription id is the channel id,
  ``/me/events`` the resource, the random ``clientState`` the channel token (stored encrypted,
  bound to the subscription). They are not kept in the connection's settings: those hold MSAL's
  token cache, written back by whichever job refreshes a token, and a subscription saved next to it
  could be overwritten by a job holding older settings (a renewal lost, notifications refused).
- :func:`maintain_subscriptions` (a periodic job, every minute) creates a subscription for every Outlook
  connection that has no live one, and renews one whose expiry is less than
  :data:`RENEW_WHEN_LEFT` away, in place (``PATCH``, same id): with a lifetime just under 4,230
  minutes, one renewal a day, two days ahead. A subscription Graph no longer knows is made again. A
  failure is logged with the connection id, pauses that connection's upkeep (``core.push.pause``,
  shown in its sync health) and fails the run at its end (the periodic job's last error in
  ``alliance jobs periodic``): never silently lost, and not asked again every minute.
  Why not the generic ``push.renew`` job (``alliance.push``), and so no ``Capability.PUSH``: that
  job replaces channels (Google cannot renew one) and only logs a failure for the next minute's
  run; Graph renews in place, keeping the id Graph is already delivering with, and a lapsing
  subscription must be surfaced.
- The webhook checks each notification's subscription id and ``clientState`` with
  ``core.push.verify_ping``; a batch may carry several connections' subscriptions.
- :func:`request_sync` queues one ``outlook.sync`` job per connection under a queueing lock, so a
  burst of notifications (or notifications during a sync) becomes a single follow-up sync.
- A subscription made anew (a new connection's first, or one Graph forgot) is followed by one
  sync: the changes made before it existed were never notified.
- Lifecycle events: ``reauthorizationRequired`` reauthorizes (subscribes again and syncs when Graph
  no longer knows it), ``subscriptionRemoved`` subscribes again and syncs, ``missed`` syncs.

Connections made before subscriptions moved here kept theirs in their settings; those lapse at Graph
within three days (their notifications are refused meanwhile) and the upkeep job subscribes anew.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from alliance.providers import context_for, provider_for
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.jobs.queue import defer_job
from core.mirror import (
    ConnectionView,
    get_connection,
    list_connections,
    therapist_timezone,
    update_connection_settings,
)
from core.push import ChannelView, channels_of, extend_channel, live_channels, mark_stopped, record_channel
from core.push.pause import clear_pause, pause_upkeep, paused_connections
from core.redaction import describe_error
from core.store import Store
from core.sync import SourceError
from core.sync.backoff import delay_past_backoff, waiting_until
from integrations.outlook import OutlookProvider
from integrations.outlook.subscriptions import (
    LIFETIME,
    RENEW_EVERY,
    RESOURCE,
    SubscriptionGone,
    Subscriptions,
    new_client_state,
)

log = logging.getLogger(__name__)

PROVIDER = "outlook"
SYNC_JOB = "outlook.sync"
LIFECYCLE_JOB = "outlook.lifecycle"
MAINTAIN_JOB = "outlook.subscriptions"
# Every minute: a new connection gets its subscription soon after it is added; a run with nothing
# due costs three queries and no call to Graph.
MAINTAIN_EVERY = timedelta(minutes=1)
RENEW_WHEN_LEFT = LIFETIME - RENEW_EVERY


def notification_urls(public_url: str) -> tuple[str, str]:
    """(notification URL, lifecycle URL): the same for every connection (each item names its subscription)."""
    return f"{public_url}/webhooks/outlook", f"{public_url}/webhooks/outlook/lifecycle"


def request_sync(
    store: Store, registry: JobRegistry, connection_id: int, now: datetime, delay: timedelta = timedelta(0)
) -> bool:
    """Queue one sync of the connection; False when one is already waiting (it absorbs this one).

    Never earlier than the connection's ``backoff_until`` (core.sync.backoff).
    """
    return request_sync_after(
        store, registry, connection_id, now, delay, backoff_until=waiting_until(store, connection_id, now)
    )


def request_sync_after(
    store: Store,
    registry: JobRegistry,
    connection_id: int,
    now: datetime,
    delay: timedelta,
    *,
    backoff_until: datetime | None,
) -> bool:
    """:func:`request_sync` for a caller that read ``backoff_until`` already (the webhook, with the
    subscription it verified): one transaction less per notification."""
    delay = delay_past_backoff(delay, now, backoff_until)
    return defer_job(
        store,
        registry,
        SYNC_JOB,
        {"connection_id": connection_id},
        run_at=now + delay,
        queueing_lock=f"{SYNC_JOB}:{connection_id}",
    )


def _outlook_connections(store: Store, *, with_settings: bool = True) -> list[ConnectionView]:
    return [c for c in list_connections(store, with_settings=with_settings) if c.provider == PROVIDER]


def live_subscription(store: Store, connection_id: int) -> ChannelView | None:
    """The connection's newest subscription not stopped (None: it has none)."""
    live = [c for c in channels_of(store, connection_id) if c.provider == PROVIDER and c.stopped_at is None]
    return max(live, key=lambda c: c.expires_at) if live else None


def _provider(store: Store, settings: Settings, connection: ConnectionView, now: datetime) -> OutlookProvider:
    def save(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    context = context_for(settings, therapist_timezone(store, connection.therapist_id), now)
    provider = provider_for(connection, context, save_settings=save, store=store)
    if not isinstance(provider, OutlookProvider):
        raise TypeError(f"connection {connection.id} is not an Outlook connection")
    return provider


def _subscribe(store: Store, settings: Settings, provider: OutlookProvider, connection_id: int, now: datetime) -> bool:
    """Make and store a new subscription; False when there is no public URL to make one for."""
    if settings.public_url is None:
        return False
    secret = new_client_state()
    notify, lifecycle = notification_urls(settings.public_url)
    subscriptions = Subscriptions(provider.client)
    made = subscriptions.create(notify, lifecycle, secret, now)
    try:
        record_channel(
            store,
            connection_id,
            PROVIDER,
            channel_id=made.id,
            resource_id=RESOURCE,
            token=secret,
            expires_at=made.expires_at,
        )
    except Exception:
        # Not stored means its notifications would be refused: do not leave it running at Graph.
        subscriptions.delete(made.id)
        raise
    log.info("Outlook subscription made for connection %s", connection_id)
    return True


def maintain_connection(
    store: Store,
    settings: Settings,
    registry: JobRegistry,
    connection: ConnectionView,
    current: ChannelView | None,
    now: datetime,
) -> None:
    """Make sure one connection has a live subscription that lasts at least another day;
    ``current`` is its newest live subscription (None: it has none).

    A subscription made anew (the connection had none, or Graph forgot it) is followed by one
    sync: nothing notified the changes made before it existed. A renewal in place needs none."""
    if current is not None and current.expires_at - now > RENEW_WHEN_LEFT:
        return
    with_settings = (
        get_connection(store, connection.therapist_id, connection.id) if not connection.settings else connection
    )
    if with_settings is None:
        return  # removed meanwhile
    provider = _provider(store, settings, with_settings, now)
    if current is not None:
        try:
            renewed = Subscriptions(provider.client).renew(current.channel_id, now)
        except SubscriptionGone:
            log.info("Outlook subscription of connection %s is gone; subscribing again", connection.id)
            mark_stopped(store, current.channel_id, now)
        else:
            extend_channel(store, current.channel_id, renewed.expires_at)
            return
    if _subscribe(store, settings, provider, connection.id, now):
        request_sync(store, registry, connection.id, now)


def _live_subscriptions(store: Store) -> dict[int, ChannelView]:
    """Each Outlook connection's newest subscription not stopped, in one query (the upkeep runs
    every minute)."""
    newest: dict[int, ChannelView] = {}
    for channel in live_channels(store, PROVIDER):
        known = newest.get(channel.connection_id)
        if known is None or channel.expires_at > known.expires_at:
            newest[channel.connection_id] = channel
    return newest


def maintain_subscriptions(store: Store, settings: Settings, registry: JobRegistry, now: datetime | None = None) -> int:
    """Create or renew every Outlook connection's subscription (``registry`` names the sync that a
    new subscription asks for); returns how many connections were handled with Graph.

    Every minute, so a new connection is notified of its changes within a minute of connecting.
    The usual run, every subscription days from lapsing, is three queries and no call to Graph. A
    connection whose upkeep fails is paused like a refused Google channel (``core.push.pause``: 5
    minutes, doubling, capped at 6 hours; shown in its sync health) rather than asked every minute,
    and the run still fails at its end, so ``alliance jobs`` shows it.
    """
    if settings.public_url is None:
        return 0
    now = now or datetime.now(UTC)
    live = _live_subscriptions(store)
    paused = paused_connections(store, now)
    handled = 0
    failed: list[int] = []
    # Listed without decrypting anything; a connection's settings are opened only when Graph must be called.
    for connection in _outlook_connections(store, with_settings=False):
        current = live.get(connection.id)
        if (current is not None and current.expires_at - now > RENEW_WHEN_LEFT) or connection.id in paused:
            continue
        handled += 1
        try:
            maintain_connection(store, settings, registry, connection, current, now)
        except (SourceError, ValueError) as exc:  # ValueError: InvalidSettings
            until = pause_upkeep(
                store,
                connection.id,
                now,
                quota=getattr(exc, "quota", False),
                reason=describe_error(exc),
                retry_after=getattr(exc, "retry_after", None),
            )
            log.warning(
                "Outlook subscription of connection %s not made or renewed: %s; next try at %s",
                connection.id,
                describe_error(exc),
                until.isoformat(timespec="minutes"),
            )
            failed.append(connection.id)
        else:
            clear_pause(store, connection.id)
    if failed:
        raise SourceError(f"Outlook subscriptions of connection(s) {failed} could not be made or renewed")
    return handled


def handle_lifecycle(
    store: Store,
    settings: Settings,
    registry: JobRegistry,
    connection_id: int,
    event: str,
    subscription_id: str | None = None,
) -> None:
    """Act on one verified lifecycle event of a connection's subscription."""
    now = datetime.now(UTC)
    connection = next((c for c in _outlook_connections(store) if c.id == connection_id), None)
    if connection is None:
        return  # removed meanwhile
    provider = _provider(store, settings, connection, now)
    if subscription_id is None:
        current = live_subscription(store, connection_id)
        subscription_id = current.channel_id if current is not None else None
    if event == "reauthorizationRequired" and subscription_id is not None:
        try:
            Subscriptions(provider.client).reauthorize(subscription_id)
            return
        except SubscriptionGone:  # made anew: what changed while it was gone was never notified
            mark_stopped(store, subscription_id, now)
            _subscribe(store, settings, provider, connection_id, now)
    if event == "subscriptionRemoved":
        if subscription_id is not None:
            mark_stopped(store, subscription_id, now)
        _subscribe(store, settings, provider, connection_id, now)
    # subscriptionRemoved, missed, and a subscription made anew: notifications may have been
    # lost; a delta sync catches up.
    request_sync(store, registry, connection_id, now)


class SyncBusy(SourceError):
    """Another sync of the connection holds it; the job runner tries again shortly."""


def register_jobs(registry: JobRegistry, settings: Settings) -> None:
    """The Outlook push jobs: coalesced syncs, lifecycle events, and (with a public URL) the upkeep."""
    from alliance.syncing import sync_one  # alliance.syncing is heavier; only the worker needs it

    def outlook_sync(store: Store, connection_id: int) -> None:
        connection = next((c for c in _outlook_connections(store) if c.id == connection_id), None)
        if connection is None:
            return  # removed since the notification came
        started = datetime.now(UTC)
        if connection.backoff_until is not None and connection.backoff_until > started:
            # Graph throttled an earlier sync: a notification does not call it before the backoff ends.
            request_sync(store, registry, connection_id, started, connection.backoff_until - started)
            return
        outcome = sync_one(store, settings, connection)
        if outcome.failure == "busy":
            # The running sync may have read the delta before this change: run once more after it.
            raise SyncBusy(f"connection {connection_id} is being synced; trying again")
        if outcome.backoff_until is not None:
            # A retryable failure (core.sync.backoff): ask again when the backoff ends, not by job retry.
            at = datetime.now(UTC)
            request_sync(store, registry, connection_id, at, max(timedelta(0), outcome.backoff_until - at))

    def outlook_lifecycle(store: Store, connection_id: int, event: str, subscription_id: str | None = None) -> None:
        handle_lifecycle(store, settings, registry, connection_id, event, subscription_id)

    def outlook_subscriptions(store: Store) -> None:
        maintain_subscriptions(store, settings, registry)

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
    "live_subscription",
    "maintain_connection",
    "maintain_subscriptions",
    "notification_urls",
    "register_jobs",
    "request_sync",
    "request_sync_after",
]
