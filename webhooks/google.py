"""``POST /webhooks/google``: Google Calendar push pings (reference/providers.md 1.5, 4b).

A ping has no body; everything is in ``X-Goog-*`` headers. It only says "something changed in
the watched calendar", so the answer is one incremental sync of the connection, requested through
``core.jobs.coalesce`` (a burst of pings, or pings during a running sync, become one follow-up
run) and run by the worker, never here: the endpoint answers within milliseconds.

- ``sync`` (the first message of a new channel, which may arrive before ``events.watch`` even
  returned): acknowledged, nothing to sync.
- ``exists`` / ``not_exists``: the channel id, its token and the resource id must match a channel
  we opened (``core.push.verify_ping``); then a sync is requested and 200 returned. Ping-started
  syncs of a calendar begin ``ALLIANCE_PUSH_SYNC_SPACING_MS`` apart (off by default): a ping after a
  quiet spell syncs at once, the pings of a burst (quick successive edits, a series edit touching
  many events) within that spacing of the last sync join one run due then: one events.list.
- A re-delivery (its ``X-Goog-Message-Number`` no higher than one already acted on for the channel,
  ``core.push.pings``) is acknowledged with 200 and syncs nothing.
- Anything unverified: 403, logged with the channel id only (never the token), nothing synced.
  Google does not retry a 403 (only 5xx), so a forged or stale ping costs one request.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from fastapi import APIRouter, Request, Response

from alliance.jobs import build_registry
from alliance.reconcile import request_sync_in
from core.jobs import JobRegistry
from core.push.pings import accept_ping_in, parse_message_number
from portal.deps import SettingsDep, StoreDep

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])

PROVIDER = "google"
_CHANGE_STATES = frozenset({"exists", "not_exists"})


def _registry(request: Request, settings: SettingsDep) -> JobRegistry:
    # The job names a request may name; built once per app (building it is cheap but not free).
    registry: JobRegistry | None = getattr(request.app.state, "google_push_registry", None)
    if registry is None:
        registry = build_registry(settings)
        request.app.state.google_push_registry = registry
    return registry


@router.post(
    "/google",
    status_code=200,
    responses={403: {"description": "Unknown channel, wrong token or wrong resource: ignored"}},
    include_in_schema=False,
)
def google_ping(request: Request, store: StoreDep, settings: SettingsDep) -> Response:
    """Receive one Google push message (headers only)."""
    headers = request.headers
    channel_id = headers.get("x-goog-channel-id", "")
    state = headers.get("x-goog-resource-state", "")
    if state == "sync":
        log.info("Google push channel %s confirmed", channel_id[:64])
        return Response(status_code=200)
    now = datetime.now(UTC)
    number = parse_message_number(headers.get("x-goog-message-number"))
    registry = _registry(request, settings)
    spacing = timedelta(milliseconds=settings.push_sync_spacing_ms)
    # One transaction: verifying the channel, claiming the message number and requesting the sync
    # commit together (or not at all: Google retries what we answer with a 5xx, and that retry
    # then finds its number unclaimed).
    with store.session() as session:
        ping = accept_ping_in(
            session,
            store,
            PROVIDER,
            channel_id=channel_id,
            token=headers.get("x-goog-channel-token"),
            resource_id=headers.get("x-goog-resource-id"),
            message_number=number,
            now=now,
        )
        if ping is None:
            log.warning("Google push ping refused: unknown channel %r, or wrong token or resource", channel_id[:64])
            return Response(status_code=403)
        if state not in _CHANGE_STATES:
            log.info("Google push ping with resource state %r ignored", state[:32])
            return Response(status_code=200)
        if ping.replay:
            log.debug("Google push message %s of channel %s delivered again: no sync", number, channel_id[:64])
            return Response(status_code=200)
        delay = ping.sync_delay(now, spacing)
        queued = request_sync_in(session, registry, ping.connection_id, now, delay, backoff_until=ping.backoff_until)
    worker = getattr(request.app.state, "worker", None)
    if worker is not None:
        worker.wake(after=delay.total_seconds())  # the embedded worker; procrastinate's insert NOTIFY wakes its own
    log.debug("Google push ping for connection %s (%s)", ping.connection_id, "queued" if queued else "coalesced")
    return Response(status_code=200)
