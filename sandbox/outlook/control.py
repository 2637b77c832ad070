"""HTTP control API for tests in other processes (the same operations as :class:`OutlookState`'s methods).

Under ``/_sandbox``: ``POST /events`` (seed, body as Graph's, ``iCalUId`` allowed),
``PATCH /events/{id}`` and ``DELETE /events/{id}`` (edits as the therapist's own calendar app
makes them, no token needed), ``POST /revoke-consent``, ``POST /expire-delta-tokens``,
``POST /faults`` (``{"target", "status", "code"?, "retry_after"?, "times"?}``), ``PATCH /settings``,
``GET /requests?path=`` (the request log), ``POST /reset``.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from sandbox.outlook.state import GraphError, OutlookState

PREFIX = "/_sandbox"


def control_router(state: OutlookState) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.post("/events", status_code=201)
    async def seed(request: Request) -> dict[str, Any]:
        return state.seed_event(await request.json())

    @router.patch("/events/{event_id}")
    async def edit(request: Request, event_id: str) -> dict[str, str]:
        state.update_event(event_id, await request.json())
        return {"id": event_id}

    @router.delete("/events/{event_id}", status_code=204)
    def remove(event_id: str) -> Response:
        state.delete_event(event_id)
        return Response(status_code=204)

    @router.post("/revoke-consent", status_code=204)
    def revoke() -> Response:
        state.revoke_consent()
        return Response(status_code=204)

    @router.post("/expire-delta-tokens")
    def expire() -> dict[str, int]:
        return {"expired": state.expire_delta_tokens()}

    @router.post("/faults", status_code=204)
    async def fault(request: Request) -> Response:
        body = await request.json()
        state.inject(
            str(body["target"]),
            int(body.get("status", 429)),
            code=str(body.get("code") or ""),
            retry_after=body.get("retry_after"),
            times=int(body.get("times", 1)),
        )
        return Response(status_code=204)

    @router.patch("/settings")
    async def settings(request: Request) -> dict[str, Any]:
        body = await request.json()
        known = {f.name for f in dataclasses.fields(state.settings)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise GraphError(400, "BadRequest", f"unknown settings: {', '.join(unknown)}")
        for name, value in body.items():
            setattr(state.settings, name, value)
        return dataclasses.asdict(state.settings)

    @router.get("/requests")
    def requests(path: str = "") -> list[dict[str, Any]]:
        return [
            {"method": r.method, "path": r.path, "query": r.query, "status": r.status} for r in state.requests(path)
        ]

    @router.post("/reset", status_code=204)
    def reset() -> Response:
        state.reset()
        return Response(status_code=204)

    return router


__all__ = ["PREFIX", "control_router"]
