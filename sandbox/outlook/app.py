"""The emulator's ASGI app: the identity platform, Graph and the control API.

A middleware in front of the routes records each request (method, path, query, Prefer and
If-Match headers, status, peer address; each request of a ``$batch`` too), enforces Outlook's
limit of concurrent requests per mailbox (429 ``ApplicationThrottled`` beyond it, as Graph
answers), adds the configured latency, and applies injected faults (Graph errors with
``Retry-After``, or identity-platform errors on the token endpoint).
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint

from sandbox.outlook.batch import batch_router
from sandbox.outlook.control import control_router
from sandbox.outlook.graph import graph_router
from sandbox.outlook.identity import identity_router
from sandbox.outlook.state import GraphError, OAuthFailure, OutlookState, RequestRecord

_RECORDED_HEADERS = ("prefer", "if-match", "content-type")


def _target(path: str) -> str | None:
    lowered = path.lower()
    if lowered.endswith("/oauth2/v2.0/token"):
        return "token"
    if lowered.startswith("/v1.0/$batch"):
        return "batch"  # its requests are dispatched through this app, each recorded and counted itself
    if lowered.startswith("/v1.0/me/calendarview/delta"):
        return "delta"
    if lowered.startswith("/v1.0/me/events"):
        return "events"
    if lowered.startswith("/v1.0/subscriptions"):
        return "subscriptions"
    if lowered.startswith("/v1.0/"):
        return "graph"
    return None


class _Emulation(BaseHTTPMiddleware):
    def __init__(self, app: Any, state: OutlookState) -> None:
        super().__init__(app)
        self.state = state

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        state = self.state
        target = _target(request.url.path)
        if target is None:
            return await call_next(request)
        record = RequestRecord(
            request.method,
            request.url.path,
            request.url.query,
            {h: ", ".join(request.headers.getlist(h)) for h in _RECORDED_HEADERS if h in request.headers},
            client=f"{request.client.host}:{request.client.port}" if request.client else None,
        )
        with state.lock:
            state.log.append(record)
        response = await self._answer(request, call_next, target)
        record.status = response.status_code
        return response

    async def _answer(self, request: Request, call_next: RequestResponseEndpoint, target: str) -> Response:
        state = self.state
        fault = state.take_fault(target)
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
            if target == "token":
                failure = OAuthFailure(
                    fault.code or "temporarily_unavailable", "AADSTS50196: sandbox fault", fault.status
                )
                return JSONResponse(failure.body(), status_code=fault.status, headers=headers)
            code = fault.code or ("TooManyRequests" if fault.status == 429 else "ServiceNotAvailable")
            error = GraphError(fault.status, code, "Injected by the sandbox.")
            return JSONResponse(error.body(), status_code=fault.status, headers=headers)
        if target in ("token", "batch"):
            return await call_next(request)
        with state.lock:
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            over = state.in_flight > state.settings.max_concurrent
        try:
            if over:
                error = GraphError(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.")
                return JSONResponse(error.body(), status_code=429, headers={"Retry-After": "1"})
            if state.settings.latency:
                await asyncio.sleep(state.settings.latency)
            return await call_next(request)
        finally:
            with state.lock:
                state.in_flight -= 1


def create_app(state: OutlookState | None = None) -> FastAPI:
    """The emulator as an ASGI app (no import-time side effects)."""
    state = state if state is not None else OutlookState()
    app = FastAPI(title="Microsoft Graph + identity emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state

    @app.exception_handler(GraphError)
    async def graph_error(request: Request, exc: GraphError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    app.include_router(control_router(state))
    app.include_router(identity_router(state))
    app.include_router(graph_router(state))
    app.include_router(batch_router())
    app.add_middleware(_Emulation, state=state)
    return app


__all__ = ["create_app"]
