"""``POST /webhooks/outlook`` and ``/webhooks/outlook/lifecycle``: Microsoft Graph change notifications.

- Validation: Graph POSTs ``?validationToken=<opaque>`` (a ``text/plain``, usually empty body) when
  a subscription is made; the answer is 200, ``text/plain``, the URL-decoded token, at once. No
  body parameter is declared, so nothing tries to parse that body as JSON.
- Notifications: ``{"value": [...]}``, possibly several per POST, possibly of several
  subscriptions (connections). An item counts only when its ``subscriptionId`` is a subscription
  Alliance made (a ``core.push`` channel, not expired, its connection not removed) and its
  ``clientState`` is that channel's secret (stored encrypted, compared in constant time). The rest
  are discarded. Verified items become one queued sync per connection (coalesced: a burst is one
  run), the worker is woken, and the answer is 202 straight away; the worker syncs, never this
  request. Nothing verified at all: 403, and nothing happens. Notification-started syncs of a
  calendar begin ``ALLIANCE_PUSH_SYNC_SPACING_MS`` apart, as for Google (off by default): one
  after a quiet spell syncs at once, a burst within that spacing of the last sync joins one run
  due then.
- Lifecycle events (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``), verified
  the same way, are queued as an ``outlook.lifecycle`` job each.

Logs carry the connection id and counts only: never the clientState or the payload.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from alliance.jobs import build_registry
from alliance.outlook_push import LIFECYCLE_JOB, PROVIDER, request_sync_after
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.jobs.queue import defer_job
from core.push.pings import spaced_delay, verified_channel
from core.store import Store
from integrations.outlook.subscriptions import RESOURCE, Notification, parse_notifications

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter(tags=["webhooks"])


def _registry(request: Request) -> JobRegistry:
    registry: JobRegistry | None = getattr(request.app.state, "outlook_push_registry", None)
    if registry is None:
        settings: Settings = request.app.state.settings
        registry = build_registry(settings)
        request.app.state.outlook_push_registry = registry
    return registry


@dataclass
class _Verified:
    """A connection's verified items, with its sync state read in the verifying query."""

    backoff_until: datetime | None
    last_sync_at: datetime | None
    items: list[Notification] = field(default_factory=list)


def _verified(store: Store, items: list[Notification], now: datetime) -> dict[int, _Verified]:
    """The items whose subscription and clientState check out, by connection id."""
    checked: dict[tuple[str, str], int | None] = {}
    good: dict[int, _Verified] = {}
    for item in items:
        pair = (item.subscription_id, item.client_state)
        if pair not in checked:
            genuine = verified_channel(
                store, PROVIDER, channel_id=item.subscription_id, token=item.client_state, resource_id=RESOURCE, now=now
            )
            checked[pair] = None if genuine is None else genuine.channel.connection_id
            if genuine is not None and checked[pair] not in good:
                good[genuine.channel.connection_id] = _Verified(genuine.backoff_until, genuine.last_sync_at)
        connection_id = checked[pair]
        if connection_id is not None:
            good[connection_id].items.append(item)
    return good


async def _items(request: Request) -> list[Notification]:
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        return []
    return parse_notifications(body)


def _wake(request: Request, after: float = 0.0) -> None:
    # A worker that can be woken runs the sync now (or when it is due) instead of at its next poll.
    wake = getattr(getattr(request.app.state, "worker", None), "wake", None)
    if callable(wake):
        wake(after=after)


@router.post("/outlook", include_in_schema=False, response_model=None)
async def outlook_notifications(request: Request) -> Response:
    """Validation handshake, or a batch of change notifications."""
    token = request.query_params.get("validationToken")
    if token is not None:
        return PlainTextResponse(token)  # Starlette already URL-decoded it
    items = await _items(request)
    store: Store = request.app.state.store
    now = datetime.now(UTC)
    good = await run_in_threadpool(_verified, store, items, now)
    if not good:
        log.warning("Outlook notification refused: %d item(s), none verified", len(items))
        return Response(status_code=403)
    verified = sum(len(v.items) for v in good.values())
    if verified < len(items):
        log.warning("Outlook notification: %d of %d item(s) discarded", len(items) - verified, len(items))
    settings: Settings = request.app.state.settings
    spacing = timedelta(milliseconds=settings.push_sync_spacing_ms)
    delays: set[timedelta] = set()
    for connection_id, found in sorted(good.items()):
        delay = spaced_delay(found.last_sync_at, now, spacing)
        queued = await run_in_threadpool(
            request_sync_after, store, _registry(request), connection_id, now, delay, backoff_until=found.backoff_until
        )
        delays.add(delay)
        log.debug("Outlook notification for connection %s (%s)", connection_id, "queued" if queued else "coalesced")
    for delay in sorted(delays):
        _wake(request, delay.total_seconds())
    return Response(status_code=202)


@router.post("/outlook/lifecycle", include_in_schema=False, response_model=None)
async def outlook_lifecycle(request: Request) -> Response:
    """Validation handshake, or lifecycle events of a subscription."""
    token = request.query_params.get("validationToken")
    if token is not None:
        return PlainTextResponse(token)
    items = [i for i in await _items(request) if i.lifecycle_event]
    store: Store = request.app.state.store
    now = datetime.now(UTC)
    good = await run_in_threadpool(_verified, store, items, now)
    if not good:
        log.warning("Outlook lifecycle notification refused: %d item(s), none verified", len(items))
        return Response(status_code=403)
    for connection_id, verified in sorted(good.items()):
        for event, subscription_id in sorted({(i.lifecycle_event or "", i.subscription_id) for i in verified.items}):
            await run_in_threadpool(
                defer_job,
                store,
                _registry(request),
                LIFECYCLE_JOB,
                {"connection_id": connection_id, "event": event, "subscription_id": subscription_id},
                run_at=now,
                queueing_lock=f"{LIFECYCLE_JOB}:{connection_id}:{event}",
            )
            log.info("Outlook lifecycle event %s for connection %s", event, connection_id)
    _wake(request)
    return Response(status_code=202)
