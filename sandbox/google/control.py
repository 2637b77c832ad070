"""The control API under ``/_emulator``: what tests, benchmarks and ``alliance sandbox`` drive.

Every route is a thin wrapper over a :class:`GoogleState` method (in-process callers use those
directly). No authentication; these routes are neither logged nor subject to injected faults.

==========================================  ===================================================
``GET  /_emulator/state``                   calendars, channels, faults, settings (summary)
``POST /_emulator/reset``                   forget everything (a fresh state, same settings)
``PUT  /_emulator/settings``                change :class:`Settings` fields (JSON object)
``POST /_emulator/calendars``               ``{"id", "summary"?, "timeZone"?}``
``GET  /_emulator/calendars/{cid}/events``  every stored event incl. tombstones, with ``_seq``
``POST /_emulator/calendars/{cid}/events``  seed one event (an Event body) or ``{"events": [...]}``
``POST .../events/{eid}/edit``              patch as the therapist would (instance ids allowed)
``POST .../events/{eid}/move``              ``{"start": EventDateTime, "end"?: EventDateTime}``
``POST .../events/{eid}/retitle``           ``{"summary": "..."}``
``POST .../events/{eid}/cancel``            delete an event / series, or cancel one instance
``DELETE .../events/{eid}``                 same as cancel
``POST /_emulator/sync-tokens/expire``      ``{"calendarId"?}`` -> next incremental list is 410
``POST /_emulator/tombstones/purge``        ``{"calendarId"?}`` drop cancelled events (and sync tokens)
``POST /_emulator/oauth/clients``           ``{"client_id", "client_secret", "redirect_uris"?}``
``POST /_emulator/oauth/tokens``            mint tokens without the consent dance
``POST /_emulator/oauth/revoke``            ``{"client_id"?}`` -> refresh answers invalid_grant
``POST /_emulator/oauth/expire-access``     every access token goes stale (401 -> refresh)
``POST /_emulator/faults``                  inject a fault (see :meth:`GoogleState.inject_fault`)
``DELETE /_emulator/faults``                clear faults
``POST /_emulator/push/faults``             ``{"drop": n, "duplicate": n}``
``POST /_emulator/push/ping``               ``{"calendarIds": [...]}`` an ``exists`` ping each, no change
``GET  /_emulator/push/deliveries``         what the push sender did (``?wait=1`` waits idle)
``GET  /_emulator/channels``                live channels
``POST /_emulator/conferences/complete``    resolve pending Meet creations now
``GET  /_emulator/requests``                request log (``?path=`` prefix, ``?method=``)
``DELETE /_emulator/requests``              clear the request log
==========================================  ===================================================
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sandbox.google.errors import bad_request
from sandbox.google.state import GoogleState, Settings

PREFIX = "/_emulator"


async def _body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise bad_request("Parse Error", "parseError") from exc


def _require(body: Any, *keys: str) -> None:
    if not isinstance(body, dict):
        raise bad_request("A JSON object is required.")
    for key in keys:
        if key not in body:
            raise bad_request(f"Missing field {key}.", "required", location=key)


def control_router(state: GoogleState) -> APIRouter:
    router = APIRouter(prefix=PREFIX)

    @router.get("/state")
    async def describe() -> JSONResponse:
        return JSONResponse(await run_in_threadpool(state.describe))

    @router.post("/reset")
    async def reset() -> JSONResponse:
        await run_in_threadpool(state.reset)
        return JSONResponse({})

    @router.put("/settings")
    async def settings(request: Request) -> JSONResponse:
        body = await _body(request)
        known = {f.name: f for f in dataclasses.fields(Settings)}
        with state.lock:
            for key, value in dict(body).items():
                if key not in known:
                    raise bad_request(f"Unknown setting {key}", location=key)
                setattr(state.settings, key, value)
            return JSONResponse(dataclasses.asdict(state.settings))

    @router.post("/calendars")
    async def add_calendar(request: Request) -> JSONResponse:
        body = await _body(request)
        _require(body, "id")
        cid = state.add_calendar(
            body["id"], summary=body.get("summary"), time_zone=body.get("timeZone", "Europe/Madrid")
        )
        return JSONResponse({"id": cid})

    @router.get("/calendars/{calendar_id}/events")
    async def raw_events(calendar_id: str) -> JSONResponse:
        return JSONResponse({"items": await run_in_threadpool(state.raw_events, calendar_id)})

    @router.post("/calendars/{calendar_id}/events")
    async def seed(calendar_id: str, request: Request) -> JSONResponse:
        body = await _body(request)
        if isinstance(body, dict) and isinstance(body.get("events"), list):
            return JSONResponse({"items": await run_in_threadpool(state.seed_events, calendar_id, body["events"])})
        return JSONResponse(await run_in_threadpool(state.seed_event, calendar_id, body))

    @router.post("/calendars/{calendar_id}/events/{event_id}/edit")
    async def edit(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        body = await _body(request)
        return JSONResponse(await run_in_threadpool(state.edit_event, calendar_id, event_id, body))

    @router.post("/calendars/{calendar_id}/events/{event_id}/move")
    async def move(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        body = await _body(request)
        _require(body, "start")
        result = await run_in_threadpool(state.move_event, calendar_id, event_id, body["start"], body.get("end"))
        return JSONResponse(result)

    @router.post("/calendars/{calendar_id}/events/{event_id}/retitle")
    async def retitle(calendar_id: str, event_id: str, request: Request) -> JSONResponse:
        body = await _body(request)
        _require(body, "summary")
        return JSONResponse(await run_in_threadpool(state.retitle_event, calendar_id, event_id, body["summary"]))

    @router.post("/calendars/{calendar_id}/events/{event_id}/cancel")
    @router.delete("/calendars/{calendar_id}/events/{event_id}")
    async def cancel(calendar_id: str, event_id: str) -> JSONResponse:
        return JSONResponse(await run_in_threadpool(state.cancel_event, calendar_id, event_id))

    @router.post("/sync-tokens/expire")
    async def expire_sync_tokens(request: Request) -> JSONResponse:
        body = await _body(request)
        return JSONResponse({"expired": state.expire_sync_tokens(body.get("calendarId"))})

    @router.post("/tombstones/purge")
    async def purge_tombstones(request: Request) -> JSONResponse:
        body = await _body(request)
        return JSONResponse({"purged": state.purge_tombstones(body.get("calendarId"))})

    @router.post("/oauth/clients")
    async def add_client(request: Request) -> JSONResponse:
        body = await _body(request)
        _require(body, "client_id", "client_secret")
        state.add_client(body["client_id"], body["client_secret"], body.get("redirect_uris"))
        return JSONResponse({"client_id": body["client_id"]})

    @router.post("/oauth/tokens")
    async def tokens(request: Request) -> JSONResponse:
        body = await _body(request)
        kwargs = {k: body[k] for k in ("client_id", "scopes", "offline") if k in body}
        return JSONResponse(state.issue_tokens(**kwargs))

    @router.post("/oauth/revoke")
    async def revoke(request: Request) -> JSONResponse:
        body = await _body(request)
        return JSONResponse({"revoked": state.revoke_consent(body.get("client_id"))})

    @router.post("/oauth/expire-access")
    async def expire_access() -> JSONResponse:
        return JSONResponse({"expired": state.expire_access_tokens()})

    @router.post("/faults")
    async def inject_fault(request: Request) -> JSONResponse:
        body = dict(await _body(request))
        reason = body.pop("reason", "rateLimitExceeded")
        try:
            fault = state.inject_fault(reason, **body)
        except (TypeError, ValueError) as exc:
            raise bad_request(str(exc)) from exc
        return JSONResponse(dataclasses.asdict(fault))

    @router.delete("/faults")
    async def clear_faults() -> Response:
        state.clear_faults()
        return Response(status_code=204)

    @router.post("/push/faults")
    async def push_faults(request: Request) -> JSONResponse:
        body = await _body(request)
        state.inject_push_faults(drop=int(body.get("drop", 0)), duplicate=int(body.get("duplicate", 0)))
        return JSONResponse(dict(state.push_faults))

    @router.post("/push/ping")
    async def ping(request: Request) -> JSONResponse:
        body = await _body(request)
        _require(body, "calendarIds")
        ids = body["calendarIds"]
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
            raise bad_request("calendarIds must be a list of calendar ids.", location="calendarIds")
        return JSONResponse({"sent": await run_in_threadpool(state.ping, ids)})

    @router.get("/push/deliveries")
    async def deliveries(request: Request) -> JSONResponse:
        if request.query_params.get("wait") in ("1", "true"):
            await run_in_threadpool(state.push.wait_idle, 10.0)
        return JSONResponse({"items": state.push.deliveries()})

    @router.get("/channels")
    async def channels() -> JSONResponse:
        with state.lock:
            return JSONResponse({"items": [dataclasses.asdict(c) for c in state.channels.values()]})

    @router.post("/conferences/complete")
    async def complete_conferences() -> JSONResponse:
        return JSONResponse({"completed": await run_in_threadpool(state.complete_conferences)})

    @router.get("/requests")
    async def requests(request: Request) -> JSONResponse:
        path = request.query_params.get("path", "")
        method = request.query_params.get("method")
        return JSONResponse({"items": state.requests(path, method)})

    @router.delete("/requests")
    async def clear_requests() -> Response:
        state.clear_request_log()
        return Response(status_code=204)

    return router
