"""``POST /webhooks/zoom``: verify, store once, answer; the worker applies the events.

- ``endpoint.url_validation`` (itself signed) is answered with ``{"plainToken", "encryptedToken"}``.
- Every delivery's v0 signature is checked over the raw body, in constant time; a missing,
  forged or stale (> 5 min) one gets 401 and nothing is stored.
- Signed but malformed JSON gets 400. Events Alliance does not use are acknowledged.
- A call event is stored once (unique on event, meeting uuid, event_ts; Zoom retries and
  duplicates are acknowledged without a second row) and the answer is 200 at once; the worker's
  ``video.call_events`` job records it on the session (``core.video.calls``).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from core.video.calls import IncomingCallEvent, record_call_events
from integrations.zoom.webhook import (
    URL_VALIDATION,
    InvalidDelivery,
    MalformedEvent,
    parse_call_event,
    url_validation_answer,
    verify_signature,
)
from webhooks.batch import GroupCommit

__all__ = ["router"]

log = logging.getLogger(__name__)

router = APIRouter()


def _problem(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"title": detail, "status": status}, status_code=status, media_type="application/problem+json")


@router.post("/zoom", include_in_schema=False)
async def zoom_webhook(request: Request) -> Response:
    settings = request.app.state.settings
    secret = settings.zoom_webhook_secret
    if secret is None:
        return _problem(503, "Zoom webhooks are not configured (ALLIANCE_ZOOM_WEBHOOK_SECRET)")
    key = secret.get_secret_value()
    raw = await request.body()
    try:
        verify_signature(
            key,
            request.headers.get("x-zm-request-timestamp"),
            request.headers.get("x-zm-signature"),
            raw,
            time.time(),
        )
    except InvalidDelivery as exc:
        log.warning("zoom webhook refused: %s", exc)
        return _problem(401, "Invalid or stale Zoom signature")
    try:
        body: Any = json.loads(raw)
        if not isinstance(body, dict):
            raise MalformedEvent("not a JSON object")
        if body.get("event") == URL_VALIDATION:
            return JSONResponse(url_validation_answer(key, body))
        event = parse_call_event(body)
    except (ValueError, MalformedEvent) as exc:
        log.warning("zoom webhook malformed: %s", type(exc).__name__)
        return _problem(400, "Malformed Zoom event")
    if event is not None:
        await _writer(request).submit(event)
    return Response(status_code=200)


def _writer(request: Request) -> GroupCommit[IncomingCallEvent]:
    # One per app (its store); created on first use, on the app's event loop.
    writer: GroupCommit[IncomingCallEvent] | None = getattr(request.app.state, "zoom_event_writer", None)
    if writer is None:
        store = request.app.state.store
        writer = GroupCommit(lambda batch: record_call_events(store, batch))
        request.app.state.zoom_event_writer = writer
    return writer
