"""The emulator's ASGI app: Zoom OAuth (``/oauth/...``), Meetings API (``/v2/...``), control API.

Routes are plain (sync) functions over :class:`ZoomState`; FastAPI runs them in its thread pool
and the state's lock keeps them consistent. Request bodies are read raw and parsed here, so a
client sending extra keys (zoomus puts ``user_id`` and ``id`` in its bodies) is tolerated as Zoom
tolerates them, and a malformed body gets Zoom's 300 error rather than FastAPI's 422.
"""

from __future__ import annotations

import asyncio
import base64
import json
import urllib.parse
from typing import Any

from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

from sandbox.zoom.state import AccessToken, Fault, OAuthFailure, Settings, ZoomError, ZoomState
from sandbox.zoom.webhooks import WebhookSender

TOKEN_PATH = "/oauth/token"
AUTHORIZE_PATH = "/oauth/authorize"
CONTROL_PREFIX = "/_emulator"


def _json_body(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except ValueError:
        raise ZoomError(400, 300, "Request Body should be a valid JSON object.") from None
    if not isinstance(body, dict):
        raise ZoomError(400, 300, "Request Body should be a valid JSON object.")
    return body


def _basic(request: Request) -> tuple[str, str]:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("basic "):
        raise OAuthFailure(400, "invalid_client", "Missing client credentials", 4706)
    try:
        client_id, _, secret = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        raise OAuthFailure(400, "invalid_client", "Invalid client credentials", 4706) from None
    return client_id, secret


def oauth_router(state: ZoomState) -> APIRouter:
    router = APIRouter()

    @router.post(TOKEN_PATH)
    async def token(request: Request) -> JSONResponse:
        # Parameters as a form body (zoomus, authlib) or in the query string (some clients).
        form = dict(urllib.parse.parse_qsl((await request.body()).decode()))
        params = {**dict(request.query_params), **form}
        client_id, secret = _basic(request)
        grant = params.get("grant_type")
        if grant == "account_credentials":
            body = state.account_token(client_id, secret, params.get("account_id"))
        elif grant == "authorization_code":
            body = state.code_token(client_id, secret, params.get("code", ""), params.get("redirect_uri", ""))
        elif grant == "refresh_token":
            body = state.refresh(client_id, secret, params.get("refresh_token", ""))
            if state.settings.refresh_delay:
                await asyncio.sleep(state.settings.refresh_delay)
        else:
            raise OAuthFailure(400, "unsupported_grant_type", "Unsupported grant type", 4705)
        return JSONResponse(body)

    @router.get(AUTHORIZE_PATH)
    def authorize(request: Request) -> Response:
        """Consent is implied (the emulated user always approves); ``user`` picks the Zoom user."""
        q = request.query_params
        if q.get("response_type") != "code":
            raise OAuthFailure(400, "unsupported_response_type", "Unsupported response type", 4700)
        redirect_uri = q.get("redirect_uri", "")
        code = state.authorize(q.get("client_id", ""), redirect_uri, q.get("user"))
        query = {"code": code} | ({"state": q["state"]} if "state" in q else {})
        return RedirectResponse(f"{redirect_uri}?{urllib.parse.urlencode(query)}", status_code=302)

    return router


def meetings_router(state: ZoomState) -> APIRouter:
    router = APIRouter(prefix="/v2")

    def auth(request: Request) -> AccessToken:
        return state.authenticate(request.headers.get("authorization"))

    @router.post("/users/{user_id}/meetings", status_code=201)
    async def create(user_id: str, request: Request) -> JSONResponse:
        token = auth(request)
        meeting = state.create_meeting(token, user_id, _json_body(await request.body()))
        if state.settings.create_delay:
            await asyncio.sleep(state.settings.create_delay)
        return JSONResponse(meeting.public(state.base_url), status_code=201)

    @router.get("/users/{user_id}/meetings")
    def list_(user_id: str, request: Request) -> JSONResponse:
        token = auth(request)
        page_size = min(int(request.query_params.get("page_size", "30") or 30), 300)
        after = request.query_params.get("next_page_token") or ""
        meetings = state.list_meetings(token, user_id)
        start = int(after) if after.isdigit() else 0
        page = meetings[start : start + page_size]
        more = start + page_size < len(meetings)
        items = [{k: v for k, v in m.public(state.base_url).items() if k in _LIST_FIELDS} for m in page]
        return JSONResponse(
            {
                "page_size": page_size,
                "total_records": len(meetings),
                "next_page_token": str(start + page_size) if more else "",
                "meetings": items,
            }
        )

    @router.get("/meetings/{meeting_id}")
    def get(meeting_id: str, request: Request) -> JSONResponse:
        return JSONResponse(state.get_meeting(auth(request), meeting_id).public(state.base_url))

    @router.patch("/meetings/{meeting_id}", status_code=204)
    async def patch(meeting_id: str, request: Request) -> Response:
        token = auth(request)
        state.update_meeting(token, meeting_id, _json_body(await request.body()))
        return Response(status_code=204)

    @router.delete("/meetings/{meeting_id}", status_code=204)
    def delete(meeting_id: str, request: Request) -> Response:
        state.delete_meeting(auth(request), meeting_id)
        return Response(status_code=204)

    return router


_LIST_FIELDS = {
    "uuid",
    "id",
    "host_id",
    "topic",
    "type",
    "start_time",
    "duration",
    "timezone",
    "agenda",
    "created_at",
    "join_url",
}


def control_router(state: ZoomState, sender: WebhookSender) -> APIRouter:
    """Test controls (no auth, not logged, no faults)."""
    router = APIRouter(prefix=CONTROL_PREFIX)

    @router.get("/state")
    def summary() -> dict[str, Any]:
        with state.lock:
            return {
                "meetings": [m.public(state.base_url) for m in state.meetings.values()],
                "deleted": sorted(state.deleted_ids),
                "tokens_issued": state.tokens_issued,
                "users": [{"id": u.id, "email": u.email, "timezone": u.timezone} for u in state.users.values()],
            }

    @router.put("/settings")
    async def settings(request: Request) -> dict[str, Any]:
        changes = _json_body(await request.body())
        known = set(Settings.__dataclass_fields__)
        for key, value in changes.items():
            if key not in known:
                raise ZoomError(400, 300, f"unknown setting {key}")
            setattr(state.settings, key, tuple(value) if isinstance(value, list) else value)
        return {"ok": True}

    @router.post("/faults")
    async def fault(request: Request) -> dict[str, Any]:
        state.inject_fault(Fault(**_json_body(await request.body())))
        return {"ok": True}

    @router.post("/oauth/expire")
    def expire() -> dict[str, Any]:
        state.expire_tokens()
        return {"ok": True}

    @router.post("/webhooks/validate")
    def validate() -> dict[str, Any]:
        return {"validated": sender.validate_endpoint()}

    @router.post("/meetings/{meeting_id}/{action}")
    async def meeting_event(meeting_id: int, action: str, request: Request) -> dict[str, Any]:
        body = _json_body(await request.body())
        if action == "start":
            d = sender.meeting_started(meeting_id)
        elif action == "end":
            d = sender.meeting_ended(meeting_id)
        elif action in ("join", "leave"):
            d = sender.participant(
                meeting_id,
                joined=action == "join",
                host=bool(body.get("host")),
                name=str(body.get("name", "Guest")),
                email=str(body.get("email", "")),
            )
        elif action == "delete":
            d = sender.meeting_deleted_by_host(meeting_id)
        else:
            raise ZoomError(404, 300, f"unknown action {action}")
        return {"event": d.event, "attempts": d.attempts}

    return router


def create_app(state: ZoomState | None = None, sender: WebhookSender | None = None) -> FastAPI:
    state = state if state is not None else ZoomState()
    sender = sender if sender is not None else WebhookSender(state)
    app = FastAPI(title="Zoom API emulator", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.emulator = state

    @app.exception_handler(ZoomError)
    async def zoom_error(request: Request, exc: ZoomError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(OAuthFailure)
    async def oauth_error(request: Request, exc: OAuthFailure) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status)

    @app.middleware("http")
    async def faults_and_log(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith(CONTROL_PREFIX):
            response: Response = await call_next(request)
            return response
        fault = state.take_fault(request.method, path)
        if fault is not None:
            response = JSONResponse(
                {"code": fault.code, "message": fault.message}, status_code=fault.status, headers=fault.headers
            )
        else:
            response = await call_next(request)
        state.log_request(request.method, path, response.status_code)
        return response

    app.include_router(control_router(state, sender))
    app.include_router(oauth_router(state))
    app.include_router(meetings_router(state))
    return app
