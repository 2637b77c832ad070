"""``/connect/outlook``: connect an Outlook / Microsoft 365 calendar from the browser (MSAL, code flow with PKCE).

- ``GET /connect/outlook``: a page with one button (a POST form with the session's CSRF token).
- ``POST /connect/outlook``: MSAL starts the flow (it makes the PKCE verifier, the ``state`` and
  the nonce) and the browser is sent to Microsoft's sign-in.
- ``GET /connect/outlook/callback``: Microsoft's answer. MSAL checks the state and the nonce and
  redeems the code; the connection (MSAL's token cache, stored encrypted through the keyring like
  every connection's settings) is created, or an existing Outlook connection of the same name
  reconnected, and synced once. A connect that cannot sync adds nothing.

MSAL keeps the flow (verifier, nonce) in a dict the web app must hold until the answer comes.
Here it travels in a cookie, sealed with the therapist's data key and bound to the browser's
session secret (``core.sealed``): only this service can read it, only for the therapist and the
session that started the flow, within :data:`FLOW_TTL` (the seal carries the time it was made).
Nothing is stored server-side, so any web process can take the answer. The app registration must
list ``ALLIANCE_BASE_URL/connect/outlook/callback`` among its web redirect URIs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from typing import Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse, Response

from alliance.providers import provider_options, registry
from alliance.settings import Settings
from core.sealed import open_for_therapist, seal_for_therapist
from core.store import Store
from core.sync import SourceError
from integrations.base import InvalidSettings
from integrations.outlook import oauth
from integrations.outlook.settings import OutlookOptions
from portal.connecting import allow_form_action, connect_calendar
from portal.cookies import SESSION_COOKIE, check_csrf, csrf_token_for
from portal.deps import SettingsDep, SignedInTherapist, StoreDep
from portal.pages import TemplatesDep

__all__ = ["FLOW_COOKIE", "FLOW_TTL", "router"]

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

FLOW_TTL = 600  # seconds between the redirect to Microsoft and its answer
FLOW_COOKIE = "alliance_outlook_flow"
CALLBACK_PATH = "/connect/outlook/callback"
NAME = "outlook"
START_AGAIN = "This sign-in answer is not for this session or has expired; start again."


def _options(settings: Settings) -> OutlookOptions:
    return OutlookOptions.from_mapping(provider_options(settings)["outlook"])


def _context(session_secret: str) -> str:
    # Bound to the browser's session: a sealed flow replayed under another session does not open.
    digest = hashlib.sha256(session_secret.encode()).hexdigest()
    return f"connect.outlook.flow|{digest}"


def _seal(store: Store, therapist_id: int, session_secret: str, flow: dict[str, Any], now: float) -> str:
    data = json.dumps({"flow": flow, "at": int(now)}, separators=(",", ":")).encode()
    blob = seal_for_therapist(store, therapist_id, data, _context(session_secret))
    return base64.urlsafe_b64encode(blob).decode().rstrip("=")


def _unseal(store: Store, therapist_id: int, session_secret: str, cookie: str, now: float) -> dict[str, Any] | None:
    try:
        blob = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
    except (binascii.Error, ValueError):
        return None
    data = open_for_therapist(store, therapist_id, blob, _context(session_secret)) if blob else None
    if data is None:
        return None
    kept = json.loads(data)
    if not 0 <= now - int(kept.get("at", 0)) <= FLOW_TTL:
        return None
    flow = kept.get("flow")
    return flow if isinstance(flow, dict) else None


def _page(templates: Any, request: Request, *, error: str | None = None, status_code: int = 200) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    context = {"csrf_token": csrf_token_for(secret), "signed_in": True, "error": error}
    response: Response = templates.TemplateResponse(request, "connect_outlook.html", context, status_code=status_code)
    settings: Settings = request.app.state.settings
    return allow_form_action(response, settings.ms_authority)


@router.get("/connect/outlook")
def connect_outlook_page(request: Request, templates: TemplatesDep, therapist_id: SignedInTherapist) -> Response:
    return _page(templates, request)


@router.post("/connect/outlook")
def start_connect_outlook(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    therapist_id: SignedInTherapist,
    csrf_token: str | None = Form(None),
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    check_csrf(secret, csrf_token)
    try:
        sign_in = oauth.begin(_options(settings), settings.base_url + CALLBACK_PATH)
    except InvalidSettings as exc:
        return _page(templates, request, error=f"Outlook is not set up: {exc}.", status_code=503)
    except SourceError as exc:
        return _page(templates, request, error=f"{exc}; try again in a moment.", status_code=503)
    sealed = _seal(store, therapist_id, secret, oauth.flow_to_keep(sign_in), time.time())
    response = RedirectResponse(sign_in.url, status_code=303)
    response.set_cookie(
        FLOW_COOKIE,
        sealed,
        max_age=FLOW_TTL,
        path=CALLBACK_PATH,  # sent only with Microsoft's answer
        httponly=True,
        samesite="lax",  # the answer is a top-level GET from Microsoft's site
        secure=settings.env != "development",
    )
    return response


@router.get(CALLBACK_PATH)
def finish_connect_outlook(
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    templates: TemplatesDep,
    therapist_id: SignedInTherapist,
) -> Response:
    secret = request.cookies.get(SESSION_COOKIE, "")
    flow = _unseal(store, therapist_id, secret, request.cookies.get(FLOW_COOKIE, ""), time.time())
    if flow is None:
        # Another browser's (or session's) answer, a replayed old one, or a forged one.
        log.warning("Outlook connect callback refused: no sign-in of this session in progress, or expired")
        return _finish(templates, request, settings, error=START_AGAIN, status_code=400)
    answer = {k: v for k, v in request.query_params.items() if k in ("code", "state", "error", "error_description")}
    answer.pop("error_description", None)  # Microsoft's text may quote the user's e-mail; the code says enough
    if answer.get("error") and answer.get("error") != "access_denied":
        return _finish(
            templates,
            request,
            settings,
            error=f"Microsoft refused the sign-in ({answer['error'][:64]}). Nothing was added; start again.",
            status_code=400,
        )
    try:
        raw = oauth.finish(_options(settings), oauth.resume(_options(settings), flow), answer)
        provider_settings = registry().get("outlook").normalize_settings(raw)
    except oauth.AuthorizationFailed as exc:
        hint = " Allow calendar access on Microsoft's page to connect." if answer.get("error") else ""
        return _finish(templates, request, settings, error=f"{exc}. Nothing was added.{hint}", status_code=400)
    except (InvalidSettings, SourceError) as exc:
        return _finish(templates, request, settings, error=f"{exc}. Nothing was added.", status_code=400)
    error = connect_calendar(store, settings, therapist_id, "outlook", NAME, provider_settings)
    if error is not None:
        return _finish(templates, request, settings, error=error, status_code=502)
    response = RedirectResponse("/", status_code=303)
    response.delete_cookie(FLOW_COOKIE, path=CALLBACK_PATH)
    return response


def _finish(templates: Any, request: Request, settings: Settings, *, error: str, status_code: int) -> Response:
    response = _page(templates, request, error=error, status_code=status_code)
    response.delete_cookie(FLOW_COOKIE, path=CALLBACK_PATH)  # a flow is answered once
    return response
