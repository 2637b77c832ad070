"""Calendar API v3 routes (the subset a calendar mirror uses), as the real client calls them.

Paths are those of the discovery document with ``servicePath`` ``calendar/v3/``; the client is
pointed here with ``client_options={"api_endpoint": "<base>/calendar/v3/"}``. Handlers read the
raw query (repeated keys stay repeated) and body themselves so every error has Google's shape
instead of FastAPI's 422.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sandbox.google.errors import ApiError, bad_request
from sandbox.google.state import GoogleState

PREFIX = "/calendar/v3"


def _conference_version(request: Request) -> int:
    raw = request.query_params.get("conferenceDataVersion")
    if raw is None:
        return 0
    try:
        version = int(raw)
    except ValueError as exc:
        raise bad_request("Invalid value for: conferenceDataVersion", location="conferenceDataVersion") from exc
    if version not in (0, 1):
        raise bad_request("Invalid conference data version.", location="conferenceDataVersion")
    return version


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request("Parse Error", "parseError") from exc


def calendar_router(state: GoogleState) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    async def call(request: Request, fn: Callable[..., Any], *args: Any, write: bool = False, **kwargs: Any) -> Any:
        def run() -> Any:
            state.authorize_request(request.headers.get("authorization"), write=write)
            state.tick()
            return fn(*args, **kwargs)

        return await run_in_threadpool(run)

    @router.get("/users/me/calendarList")
    async def calendar_list(request: Request) -> JSONResponse:
        def listing() -> dict[str, Any]:
            with state.lock:
                items = [
                    {
                        "kind": "calendar#calendarListEntry",
                        "etag": cal.etag,
                        "id": cal.id,
                        "summary": cal.summary,
                        "timeZone": cal.time_zone,
                        "accessRole": "owner",
                        "primary": cal.id == state.primary_id,
                        "defaultReminders": [{"method": "popup", "minutes": 10}],
                    }
                    for cal in state.calendars.values()
                ]
            for item in items:
                if not item["primary"]:
                    del item["primary"]
            return {"kind": "calendar#calendarList", "etag": '"1"', "items": items, "nextSyncToken": "emulator"}

        return JSONResponse(await call(request, listing))

    @router.get("/calendars/{calendar_id}")
    async def get_calendar(calendar_id: str, request: Request) -> JSONResponse:
        def read() -> dict[str, Any]:
            with state.lock:
                cal = state.calendar(calendar_id)
                return {
                    "kind": "calendar#calendar",
                    "etag": cal.etag,
                    "id": cal.id,
                    "summary": cal.summary,
                    "timeZone": cal.time_zone,
                }

        return JSONResponse(await call(request, read))

    @router.get("/calendars/{calendar_id}/events")
    async def list_events(calendar_id: str, request: Request) -> JSONResponse:
        params = list(request.query_params.multi_items())
        return JSONResponse(await call(request, state.list_events, calendar_id, params))

    @router.post("/calendars/{calendar_id}/events")
    async def insert_event(calendar_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        version = _conference_version(request)
        result = await call(request, state.insert_event, calendar_id, body, conference_version=version, write=True)
        return JSONResponse(result)

    @router.post("/calendars/{calendar_id}/events/watch")
    async def watch(calendar_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        return JSONResponse(await call(request, state.watch, calendar_id, body))

    @router.get("/calendars/{calendar_id}/events/{event_id}/instances")
    async def instances(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        params = list(request.query_params.multi_items())
        return JSONResponse(await call(request, state.list_instances, calendar_id, event_id, params))

    @router.get("/calendars/{calendar_id}/events/{event_id}")
    async def get_event(calendar_id: str, event_id: str, request: Request) -> Response:
        event = await call(
            request, state.get_event, calendar_id, event_id, time_zone=request.query_params.get("timeZone")
        )
        if_none_match = request.headers.get("if-none-match")
        if if_none_match and event.get("etag") in [t.strip() for t in if_none_match.split(",")]:
            return Response(status_code=304, headers={"ETag": event["etag"]})
        return JSONResponse(event, headers={"ETag": event["etag"]})

    @router.patch("/calendars/{calendar_id}/events/{event_id}")
    async def patch_event(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        result = await call(
            request,
            state.patch_event,
            calendar_id,
            event_id,
            body,
            if_match=request.headers.get("if-match"),
            conference_version=_conference_version(request),
            write=True,
        )
        return JSONResponse(result)

    @router.put("/calendars/{calendar_id}/events/{event_id}")
    async def update_event(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        body = await _json_body(request)
        result = await call(
            request,
            state.update_event,
            calendar_id,
            event_id,
            body,
            if_match=request.headers.get("if-match"),
            conference_version=_conference_version(request),
            write=True,
        )
        return JSONResponse(result)

    @router.delete("/calendars/{calendar_id}/events/{event_id}")
    async def delete_event(calendar_id: str, event_id: str, request: Request) -> Response:
        await call(
            request, state.delete_event, calendar_id, event_id, if_match=request.headers.get("if-match"), write=True
        )
        return Response(status_code=204)

    @router.post("/channels/stop")
    async def stop_channel(request: Request) -> Response:
        body = await _json_body(request)
        await call(request, state.stop_channel, body)
        return Response(status_code=204)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown(rest: str) -> Response:
        raise ApiError(404, "notFound", "Not Found")

    return router
