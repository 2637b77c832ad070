"""``POST /webhooks/outlook`` and ``/webhooks/outlook/lifecycle``: Microsoft Graph change notifications.

- Validation: Graph POSTs ``?validationToken=<opaque>`` (a ``text/plain``, usually empty body) when
  a subscription is made; the answer is 200, ``text/plain``, the URL-decoded token, at once. No
  body parameter is declared, so nothing tries to parse that body as JSON.
- Notifications: ``{"value": [...]}``, possibly several per POST. The connection comes from the
  URL (``?c=<id>``, set when subscribing); an item counts only when its ``subscriptionId`` and
  ``clientState`` are the ones stored (encrypted) with that connection (constant-time compare).
  The rest are discarded. Verified items become one queued sync of the connection (coalesced:
  a burst is one run) and the answer is 202 straight away; the worker syncs, never this request.
  Nothing verified at all: 403, and nothing happens.
- Lifecycle events (``reauthorizationRequired``, ``subscriptionRemoved``, ``missed``), verified
  the same way, are queued as an ``outlook.lifecycle`` job each.

Logs carry the connection id and counts only: never the clientState or the payload.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from alliance.jobs import build_registry
from alliance.outlook_push import LIFECYCLE_JOB, PROVIDER, request_sync
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.jobs.queue import defer_job
from core.mirror import get_connection, list_connections
from core.store import Store
from integrations.outlook.subscriptions import Notification, client_state_matches, parse_notifications

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


def _verified(store: Store, connection_id: str | None, items: list[Notification]) -> tuple[int, list[Notification]]:
    """(connection id, the items whose subscription and clientState match it); (0, []) when none."""
    if not connection_id or not connection_id.isdigit():
        return 0, []
    wanted = int(connection_id)
    # Find the owner without decrypting anything, then decrypt this one connection's settings.
    owner = next((c.therapist_id for c in list_connections(store, with_settings=False) if c.id == wanted), None)
    connection = get_connection(store, owner, wanted) if owner is not None else None
    if connection is None or connection.provider != PROVIDER:
        return 0, []
    subscription = connection.settings.get("subscription") or {}
    sub_id, secret = subscription.get("id"), subscription.get("client_state")
    if not isinstance(sub_id, str) or not isinstance(secret, str):
        return 0, []
    good = [i for i in items if i.subscription_id == sub_id and client_state_matches(i.client_state, secret)]
    return (wanted, good) if good else (0, [])


async def _items(request: Request) -> list[Notification]:
    try:
        body: Any = json.loads(await request.body())
    except ValueError:
        return []
    return parse_notifications(body)


def _wake(request: Request) -> None:
    # A worker that can be woken runs the sync now instead of at its next poll.
    wake = getattr(getattr(request.app.state, "worker", None), "wake", None)
    if callable(wake):
        wake()


@router.post("/outlook", include_in_schema=False, response_model=None)
async def outlook_notifications(request: Request) -> Response:
    """Validation handshake, or a batch of change notifications."""
    token = request.query_params.get("validationToken")
    if token is not None:
        return PlainTextResponse(token)  # Starlette already URL-decoded it
    items = await _items(request)
    store: Store = request.app.state.store
    connection_id, good = await run_in_threadpool(_verified, store, request.query_params.get("c"), items)
    if not good:
        log.warning("Outlook notification refused: %d item(s), none verified", len(items))
        return Response(status_code=403)
    if len(good) < len(items):
        log.warning("Outlook notification: %d of %d item(s) discarded", len(items) - len(good), len(items))
    queued = await run_in_threadpool(request_sync, store, _registry(request), connection_id, datetime.now(UTC))
    _wake(request)
    log.debug("Outlook notification for connection %s (%s)", connection_id, "queued" if queued else "coalesced")
    return Response(status_code=202)


@router.post("/outlook/lifecycle", include_in_schema=False, response_model=None)
async def outlook_lifecycle(request: Request) -> Response:
    """Validation handshake, or lifecycle events of a subscription."""
    token = request.query_params.get("validationToken")
    if token is not None:
        return PlainTextResponse(token)
    items = [i for i in await _items(request) if i.lifecycle_event]
    store: Store = request.app.state.store
    connection_id, good = await run_in_threadpool(_verified, store, request.query_params.get("c"), items)
    if not good:
        log.warning("Outlook lifecycle notification refused: %d item(s), none verified", len(items))
        return Response(status_code=403)
    now = datetime.now(UTC)
    for event in sorted({i.lifecycle_event for i in good if i.lifecycle_event}):
        await run_in_threadpool(
            defer_job,
            store,
            _registry(request),
            LIFECYCLE_JOB,
            {"connection_id": connection_id, "event": event},
            run_at=now,
            queueing_lock=f"{LIFECYCLE_JOB}:{connection_id}:{event}",
        )
        log.info("Outlook lifecycle event %s for connection %s", event, connection_id)
    _wake(request)
    return Response(status_code=202)
