"""The emulator's ASGI app: Calendar API v3, Google OAuth endpoints and the control API.

``create_app(state)`` builds a FastAPI app around a :class:`GoogleState` (a fresh one when none is
given) with no import-time side effects. A pure ASGI middleware in front of the routes

- turns ``POST`` + ``X-HTTP-Method-Override: GET`` with a form body back into a GET (what
  googleapiclient sends when a GET URI is longer than 2048 characters),
- records every non-control request (method, path, query, a few headers, status) in the
  request log, and
- waits ``settings.latency`` seconds (a provider's round trip, for load tests), then
- applies injected faults: a delay, then (optionally) an error in Google's JSON shape.
"""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.google.api import calendar_router
from sandbox.google.control import PREFIX as CONTROL_PREFIX
from sandbox.google.control import control_router
from sandbox.google.errors import ApiError, OAuthError
from sandbox.google.oauth import TOKEN_PATH, oauth_router
from sandbox.google.state import Fault, GoogleState


def create_app(state: GoogleState | None = None) -> FastAPI:
    state = state if state is not None else GoogleState()
    app = FastAPI(title="Google Calendar API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.code, headers=exc.headers)

    @app.exception_handler(OAuthError)
    async def oauth_error(request: Request, exc: OAuthError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    app.include_router(control_router(state))
    app.include_router(oauth_router(state))
    app.include_router(calendar_router(state))
    app.add_middleware(EmulatorMiddleware, state=state)
    return app


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return receive


class EmulatorMiddleware:
    def __init__(self, app: ASGIApp, state: GoogleState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        state = self.state
        headers = Headers(scope=scope)
        if state.base_url is None and headers.get("host"):
            state.base_url = f"{scope.get('scheme', 'http')}://{headers['host']}"
        override = headers.get("x-http-method-override") if scope["method"] == "POST" else None
        if override:
            body = await _read_body(receive)
            scope = dict(scope)
            scope["method"] = override.upper()
            if headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
                existing = scope.get("query_string", b"")
                scope["query_string"] = b"&".join(q for q in (existing, body) if q)
                body = b""
            receive = _replay(body)
        query = urllib.parse.parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        entry: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "query": query,
            "if_match": headers.get("if-match"),
            "authorization": bool(headers.get("authorization")),
            "status": None,
            "fault": None,
            "method_override": bool(override),  # sent as POST + X-HTTP-Method-Override
            # The peer's "host:port", as an access log has it: requests sent on one kept-alive
            # connection share it.
            "client": "{}:{}".format(*scope["client"]) if scope.get("client") else None,
            "at": time.time(),
        }
        state.log_request(entry)
        if state.settings.latency > 0:
            await self._sleep(state.settings.latency)
        fault = state.take_fault(scope["method"], scope["path"])
        if fault is not None:
            entry["fault"] = fault.reason or "delay"
            if fault.delay > 0:
                await self._sleep(fault.delay)
            if fault.status is not None:
                entry["status"] = fault.status
                await self._fault_response(fault, scope["path"])(scope, receive, send)
                return

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                entry["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, recording_send)

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while not self.state.closed.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, 0.05))

    @staticmethod
    def _fault_response(fault: Fault, path: str) -> JSONResponse:
        assert fault.status is not None
        headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if path.startswith(TOKEN_PATH):  # the token endpoint speaks RFC 6749, not Google JSON errors
            error = "internal_failure" if fault.status >= 500 else fault.reason
            return JSONResponse(
                {"error": error, "error_description": fault.message}, status_code=fault.status, headers=headers
            )
        body = ApiError(fault.status, fault.reason, fault.message, domain=fault.domain).body()
        return JSONResponse(body, status_code=fault.status, headers=headers)
