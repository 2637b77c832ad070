"""``/connect/google``: connect a Google calendar from the browser (OAuth code flow with PKCE).

- ``GET /connect/google``: a page with one button (a POST form with the session's CSRF token).
- ``POST /connect/google``: redirects to Google's consent screen, asking for offline access with
  the consent prompt (Google returns a refresh token only then).
- ``GET /connect/google/callback``: Google's answer. The connection is created (or, for an existing
  Google connection of the same calendar name, reconnected) and synced once; a connect that cannot
  sync adds nothing; the grant is stored encrypted with the connection (``core.mirror``).

Nothing is stored between the redirect and the callback: the ``state`` is a timestamped nonce
with an HMAC under the browser's session secret, and the PKCE verifier is derived the same way,
so only the browser that started the flow, still signed in as the same session, can finish it,
within :data:`FLOW_TTL`. The OAuth client must list ``ALLIANCE_BASE_URL/connect/google/callback``
among its redirect URIs.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from alliance.providers import provider_options, registry
from alliance.settings import Settings
from integrations.base import InvalidSettings
from integrations.google import oauth
from integrations.google.settings import GoogleOptions
from portal.connecting import allow_form_action, connect_calendar
from portal.cookies import SESSION_COOKIE, check_csrf, csrf_token_for
from portal.deps import SettingsDep, SignedInTherapist, StoreDep
from portal.pages import TemplatesDep

__all__ = ["FLOW_TTL", "router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

FLOW_TTL = 600  # seconds between the redirect to Google and its answer
CALLBACK_PATH = "/connect/google/callback"
NAME = "google"


def _mac(secret: str, purpose: str, nonce: str) -> str:
    digest = hmac.new(secret.encode(), f"alliance connect google {purpose}|{nonce}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def _new_state(secret: str, now: float) -> str:
    nonce = f"{int(now)}.{secrets.token_urlsafe(12)}"
    return f"{nonce}.{_mac(secret, 'state', nonce)}"


def _verifier(secret: str, state: str) -> str:
    # 43 characters of base64url from 256 bits: PKCE's minimum length, full entropy.
    return _mac(secret, "pkce", state.rpartition(".")[0])


def _valid_state(secret: str, state: str, now: float) -> bool:
    nonce, _, mac = state.rpartition(".")
    issued, _, _ = nonce.partition(".")
    if not nonce or not issued.isdigit() or not hmac.compare_digest(_mac(secret, "state", nonce), mac):
        return False
    return 0 <= now - int(issued) <= FLOW_TTL


def _options(settings: Settings) -> GoogleOptions:
    return GoogleOptions.from_mapping(provider_options(settings)["google"])


def _page(templates: Any, request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    context = {"csrf_token": csrf_token_for(secret), "signed_in": True, "error": error}
    response: Response = templates.TemplateResponse(request, "connect_google.html", context, status_code=status_code)
    settings: Settings = request.app.state.settings
    return allow_form_action(response, _options(settings).auth_url)


@router.get("/connect/google")
def connect_google_page(request: Request, templates: TemplatesDep, therapist_id: SignedInTherapist) -> Response:
    return _page(templates, request)


@router.post("/connect/google")
def start_connect_google(
    request: Request,
    settings: SettingsDep,
    templates: TemplatesDep,
    therapist_id: SignedInTherapist,
    csrf_token: str | None = Form(None),
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    check_csrf(secret, csrf_token)
    state = _new_state(secret, time.time())
    try:
        flow = oauth.begin(
            _options(settings),
            settings.base_url + CALLBACK_PATH,
            state=state,
            code_verifier=_verifier(secret, state),
        )
    except oauth.AuthorizationFailed as exc:
        return _page(templates, request, error=str(exc), status_code=503)
    return RedirectResponse(flow.url, status_code=303)


@router.get(CALLBACK_PATH)
def finish_connect_google(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    therapist_id: SignedInTherapist,
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    state = request.query_params.get("state", "")
    if not _valid_state(secret, state, time.time()):
        # Another browser's (or session's) answer, a replayed old one, or a forged one.
        log.warning("Google connect callback refused: state not bound to this session or expired")
        return _page(
            templates, request, error="This sign-in answer is not for this session; start again.", status_code=400
        )
    redirect_uri = settings.base_url + CALLBACK_PATH
    # The URL Google redirected to, rebuilt from our own base URL (a proxy may have rewritten the host).
    callback_url = f"{redirect_uri}?{request.url.query}"
    flow = oauth.AuthorizationRequest(
        url="", state=state, code_verifier=_verifier(secret, state), redirect_uri=redirect_uri
    )
    try:
        raw = oauth.finish(_options(settings), flow, callback_url)
        provider_settings = registry().get("google").normalize_settings({**raw, "calendar_id": "primary"})
    except (oauth.AuthorizationFailed, InvalidSettings) as exc:
        return _page(templates, request, error=f"{exc}. Nothing was added.", status_code=400)
    error = connect_calendar(store, settings, therapist_id, "google", NAME, provider_settings)
    if error is not None:
        return _page(templates, request, error=error, status_code=502)
    return RedirectResponse("/", status_code=303)
