"""``POST /webhooks/zoom``: verify, store once, answer; the worker applies the events.

- ``endpoint.url_validation`` (itself signed) is answered with ``{"plainToken", "encryptedToken"}``.
- Every delivery's v0 signature is checked over the raw body, in constant time; a missing,
  forged or stale (> 5 min) one gets 401 and nothing is stored.
- Signed but malformed JSON gets 400. Events Alliance does not use are acknowledged.
- A call event is stored once (unique on event, meeting uuid, event_ts; Zoom retries and
  duplicates are acknowledged without a second row) and the answer is 200 at once; the worker's
  ``video.call_events`` job records it on the session (``core.video.calls``).

The endpoint is a pure ASGI middleware placed innermost (inside the body limit, request log and
security headers), not a routed FastAPI endpoint: a profile under the benchmark's load
(benchmarks/README.md, "Zoom webhooks: the ack path") spent about twice the handler's own time in
finding the route among the app's ~20 included routers and in FastAPI's request wrapping, for an
endpoint that takes no parameters, no dependencies and no session.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from typing import Any

from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from core.store import Store
from core.video.calls import IncomingCallEvent, record_call_events
from integrations.zoom.webhook import (
    URL_VALIDATION,
    InvalidDelivery,
    MalformedEvent,
    parse_call_event,
    url_validation_answer,
    verify_signature,
)
from webhooks.asgi import PostAheadOfRoutes, answer_empty, header, problem, read_body
from webhooks.batch import GroupCommit

__all__ = ["PATH", "ZoomWebhook"]

log = logging.getLogger(__name__)

PATH = "/webhooks/zoom"


class ZoomWebhook(PostAheadOfRoutes):
    """Answers ``POST /webhooks/zoom``; every other request goes on to ``app``."""

    path = PATH

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._writer: GroupCommit[IncomingCallEvent] | None = None

    async def handle_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        state = scope["app"].state
        secret = state.settings.zoom_webhook_secret
        if secret is None:
            unconfigured = problem(503, "Zoom webhooks are not configured (ALLIANCE_ZOOM_WEBHOOK_SECRET)")
            await unconfigured(scope, receive, send)
            return
        raw = await read_body(receive)
        response = await self._acknowledge(state.store, secret.get_secret_value(), scope, raw)
        if response is None:
            await answer_empty(send, 200)
        else:
            await response(scope, receive, send)

    async def _acknowledge(self, store: Store, key: str, scope: Scope, raw: bytes) -> JSONResponse | None:
        """Verify, read and store one delivery; None means "stored (or ignored): answer an empty 200"."""
        try:
            verify_signature(
                key,
                header(scope, b"x-zm-request-timestamp"),
                header(scope, b"x-zm-signature"),
                raw,
                time.time(),
            )
        except InvalidDelivery as exc:
            log.warning("zoom webhook refused: %s", exc)
            return problem(401, "Invalid or stale Zoom signature")
        try:
            body: Any = json.loads(raw)
            if not isinstance(body, dict):
                raise MalformedEvent("not a JSON object")
            if body.get("event") == URL_VALIDATION:
                return JSONResponse(url_validation_answer(key, body))
            # Reduced here, not in the job: the stored row must never hold a participant's name or e-mail.
            event = parse_call_event(body)
        except (ValueError, MalformedEvent) as exc:
            log.warning("zoom webhook malformed: %s", type(exc).__name__)
            return problem(400, "Malformed Zoom event")
        if event is not None:
            await self._writer_for(store).submit(event)
        return None

    def _writer_for(self, store: Store) -> GroupCommit[IncomingCallEvent]:
        # One per app (this middleware is built once per app, on its store); created on first use.
        if self._writer is None:

            def store_events(batch: Sequence[IncomingCallEvent]) -> None:
                record_call_events(store, batch)

            self._writer = GroupCommit(store_events)
        return self._writer
