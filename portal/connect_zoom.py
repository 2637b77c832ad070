"""``/connect/zoom``: a therapist links their own Zoom account (user-level OAuth, authlib).

``GET /connect/zoom`` sets a one-time ``state`` cookie and redirects to Zoom's consent page;
Zoom sends the browser back to ``/connect/zoom/callback`` with a code, which is exchanged for
tokens stored encrypted as the therapist's video connection. A state that does not match, a
refused code or a denied consent change nothing.
"""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from alliance.video import zoom_options
from core.video.provider import VideoProviderError
from core.video.service import connect_video
from integrations.zoom.oauth import authorization_url, exchange_code
from portal.cookies import clear_cookie, set_cookie
from portal.deps import SettingsDep, SignedInTherapist, StoreDep

__all__ = ["router"]

router = APIRouter(include_in_schema=False)

STATE_COOKIE = "alliance_zoom_state"


def _callback(request_base: str) -> str:
    return request_base.rstrip("/") + "/connect/zoom/callback"


def _page(status: int, title: str, text: str) -> HTMLResponse:
    # Fixed texts only: nothing from the request is echoed.
    body = f"<!doctype html><title>{title}</title><h1>{title}</h1><p>{text}</p><p><a href='/'>Back</a></p>"
    return HTMLResponse(body, status_code=status)


@router.get("/connect/zoom")
def start(therapist_id: SignedInTherapist, settings: SettingsDep) -> Response:
    options = zoom_options(settings)
    if not options.user_client_id or not options.user_client_secret:
        return _page(503, "Zoom is not set up", "The practice has not configured a Zoom app yet.")
    state = secrets.token_urlsafe(24)
    response = RedirectResponse(authorization_url(options, _callback(settings.base_url), state), status_code=303)
    set_cookie(response, settings, STATE_COOKIE, state, max_age=600)
    return response


@router.get("/connect/zoom/callback")
def callback(request: Request, therapist_id: SignedInTherapist, store: StoreDep, settings: SettingsDep) -> Response:
    expected = request.cookies.get(STATE_COOKIE, "")
    state = request.query_params.get("state", "")
    code = request.query_params.get("code", "")
    if not expected or not hmac.compare_digest(expected, state):
        return _page(400, "Zoom was not connected", "The sign-in link expired or was not yours. Please start again.")
    if not code:
        return _page(400, "Zoom was not connected", "Zoom did not grant access. Please start again.")
    try:
        credentials = exchange_code(zoom_options(settings), code, _callback(settings.base_url))
    except VideoProviderError:
        return _page(400, "Zoom was not connected", "Zoom refused the sign-in. Please start again.")
    # The worker's sweep provisions the upcoming online sessions (not this request).
    connect_video(store, therapist_id, "zoom", "user", credentials)
    response = RedirectResponse("/", status_code=303)
    clear_cookie(response, settings, STATE_COOKIE)
    return response
