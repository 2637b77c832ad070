"""ASGI middleware of the web app: body size limit, security headers, request log, error guard.

Pure ASGI (not BaseHTTPMiddleware) so request bodies stream through untouched and the byte count
sees every chunk.
"""

from __future__ import annotations

import logging
import time
import traceback
from typing import Any

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from portal.errors import error_page, problem, wants_html

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024


class BodyTooLarge(HTTPException):
    """Raised while reading a request body that grows past the limit.

    An HTTPException, so FastAPI's body parsing re-raises it and it is answered as a 413 problem
    instead of a generic "error parsing the body".
    """

    def __init__(self) -> None:
        super().__init__(status_code=413, detail="The request body is larger than 1 MB.")


def _too_large_response(scope: Scope) -> Any:
    headers = Headers(scope=scope)
    if wants_html(scope.get("path", ""), headers.get("accept", "")):
        return error_page(None, None, 413)
    return problem(413, "The request body is larger than 1 MB.")


class BodySizeLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, and by counting streamed chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # The raw header list, not starlette's Headers: this runs on every request (the API's
        # polled listings included), and a request with neither header has no body to limit.
        declared: str | None = None
        streamed = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value.decode("latin-1")
            elif name == b"transfer-encoding":
                streamed = True
        if declared is None and not streamed:
            await self.app(scope, receive, send)
            return
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            # Refuse before reading a byte: a malformed length is as unsafe as a large one.
            status_response = _too_large_response(scope) if declared.isdigit() else problem(400, "Bad Content-Length.")
            await status_response(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                # Chunked uploads have no Content-Length; a lying one is caught here too.
                if received > self.max_bytes:
                    raise BodyTooLarge()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if started:
                raise
            await _too_large_response(scope)(scope, receive, send)


def _security_headers(path: str, production: bool) -> list[tuple[bytes, bytes]]:
    headers = [
        (b"x-content-type-options", b"nosniff"),
        # Setup links carry a secret in the path: never hand it to another site as a Referer.
        (b"referrer-policy", b"no-referrer"),
        (b"x-frame-options", b"DENY"),
        (
            b"content-security-policy",
            b"default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'",
        ),
    ]
    if not path.startswith("/static/"):
        # Pages and API answers hold a therapist's data: no shared or disk caches.
        headers.append((b"cache-control", b"no-store"))
    if production:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class SecurityHeaders:
    """Headers every response gets (nosniff, no-referrer, CSP, no-store, HSTS in production)."""

    def __init__(self, app: ASGIApp, production: bool) -> None:
        self.app = app
        self.production = production

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = _security_headers(scope.get("path", ""), self.production)

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [h for h in extra if h[0] not in present]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _route_template(scope: Scope) -> str:
    """The matched route's template (``/setup-password/{token}``), never the raw path with its secrets."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    if isinstance(path, str):
        return path
    raw = scope.get("path", "")
    return raw if raw.startswith("/static/") else "(unmatched)"


def _frames(exc: BaseException) -> str:
    """Where an exception happened (file:line in function), without its message, which may hold data."""
    frames = traceback.extract_tb(exc.__traceback__)[-8:]
    return " <- ".join(f"{f.filename.rsplit('/', 2)[-1]}:{f.lineno} in {f.name}" for f in reversed(frames))


class RequestLog:
    """Access log with route templates, and the last line of defence for unexpected exceptions.

    An exception becomes a 500 (problem+json for the API, a plain page for people) and one log line
    with its type and stack locations. Its message is not logged: it can carry a row's content.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started_at = time.perf_counter()
        status = 0

        async def tracking_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            logger.error(
                "unhandled %s in %s %s at %s", type(exc).__name__, scope["method"], _route_template(scope), _frames(exc)
            )
            if status:
                return  # the response is under way; the server closes the connection
            status = 500
            accept = Headers(scope=scope).get("accept", "")
            if wants_html(scope.get("path", ""), accept):
                response = error_page(None, None, 500)
            else:
                response = problem(500, "An unexpected error occurred.")
            await response(scope, receive, send)
        finally:
            logger.info(
                "%s %s %s %.1fms",
                scope["method"],
                _route_template(scope),
                status,
                (time.perf_counter() - started_at) * 1000,
            )
