"""Google's OAuth 2.0 endpoints for installed/web apps: authorize, token, revoke.

- ``GET /o/oauth2/v2/auth`` checks ``client_id`` and ``redirect_uri`` first (errors there are
  shown as a page, never redirected — like Google), then ``response_type=code``, ``scope``,
  PKCE (``code_challenge`` + ``code_challenge_method`` S256 or plain), ``access_type``,
  ``prompt``; it consents on the user's behalf and redirects to
  ``redirect_uri?code=...&scope=...&state=...``. ``?interactive=1`` shows a consent page instead.
- ``POST /token`` (form; client secret in the body or HTTP Basic) answers the
  ``authorization_code`` grant (``code_verifier`` checked) and the ``refresh_token`` grant; a
  refresh token is only issued for ``access_type=offline`` on the consent screen (``prompt=consent``
  or the app's first consent). Revoked grants and bad/used codes answer 400 ``invalid_grant``.
- ``POST /revoke?token=...`` revokes a grant, as ``https://oauth2.googleapis.com/revoke`` does.
"""

from __future__ import annotations

import base64
import html
import re
import secrets
import urllib.parse

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool

from sandbox.google.errors import OAuthError
from sandbox.google.state import GoogleState

AUTHORIZE_PATH = "/o/oauth2/v2/auth"
TOKEN_PATH = "/token"
REVOKE_PATH = "/revoke"
_PKCE = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_PROMPTS = {"none", "consent", "select_account"}


def _error_page(status: int, error: str, detail: str) -> HTMLResponse:
    body = (
        "<!doctype html><title>Error</title><h1>Access blocked: authorization error</h1>"
        f"<p>Error {status}: {html.escape(error)}</p><p>{html.escape(detail)}</p>"
    )
    return HTMLResponse(body, status_code=status)


def _redirect(redirect_uri: str, **params: str | None) -> RedirectResponse:
    query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
    separator = "&" if urllib.parse.urlsplit(redirect_uri).query else "?"
    return RedirectResponse(f"{redirect_uri}{separator}{query}", status_code=302)


def oauth_router(state: GoogleState) -> APIRouter:
    router = APIRouter()

    def check(params: dict[str, str]) -> Response | None:
        """None when the request is acceptable; otherwise the error page or error redirect."""
        client = state.clients.get(params.get("client_id", ""))
        if client is None:
            return _error_page(401, "invalid_client", "The OAuth client was not found.")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not state.redirect_allowed(client, redirect_uri):
            return _error_page(400, "redirect_uri_mismatch", f"redirect_uri={redirect_uri} is not registered.")
        st = params.get("state")

        def fail(error: str, description: str) -> Response:
            return _redirect(redirect_uri, error=error, error_description=description, state=st)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "Only response_type=code is supported.")
        if not params.get("scope", "").split():
            return fail("invalid_request", "Missing required parameter: scope")
        challenge = params.get("code_challenge")
        method = params.get("code_challenge_method")
        if challenge is None:
            if method is not None:
                return fail("invalid_request", "Missing required parameter: code_challenge")
            if state.settings.require_pkce:
                return fail("invalid_request", "Missing required parameter: code_challenge")
        else:
            if (method or "plain") not in ("S256", "plain"):
                return fail("invalid_request", "Invalid code_challenge_method.")
            if not _PKCE.match(challenge) or (method == "S256" and len(challenge) != 43):
                return fail("invalid_request", "Invalid code_challenge.")
        if params.get("access_type", "online") not in ("online", "offline"):
            return fail("invalid_request", "Invalid access_type.")
        prompts = set(params.get("prompt", "").split())
        if not prompts <= _PROMPTS or ("none" in prompts and len(prompts) > 1):
            return fail("invalid_request", "Invalid prompt.")
        if "none" in prompts and not state.has_consented(client.client_id):
            return fail("consent_required", "The user has not granted the app access.")
        return None

    def decide(params: dict[str, str], approve: bool, consent_shown: bool) -> Response:
        redirect_uri = params["redirect_uri"]
        if not approve:
            return _redirect(redirect_uri, error="access_denied", state=params.get("state"))
        code = state.issue_code(params, consent_shown=consent_shown)
        return _redirect(redirect_uri, code=code, scope=params.get("scope"), state=params.get("state"))

    @router.get(AUTHORIZE_PATH)
    @router.get("/o/oauth2/auth")
    async def authorize(request: Request) -> Response:
        params = dict(request.query_params)
        problem = check(params)
        if problem is not None:
            return problem
        prompts = set(params.get("prompt", "").split())
        # The consent screen shows on prompt=consent and on an app's first authorization.
        consent_shown = "consent" in prompts or not state.has_consented(params["client_id"])
        if params.get("interactive") in ("1", "true"):
            ticket = secrets.token_urlsafe(16)
            with state.lock:
                state.pending_consents[ticket] = params
            scopes = "".join(f"<li>{html.escape(s)}</li>" for s in params.get("scope", "").split())
            page = (
                "<!doctype html><title>Sign in - Google Accounts (emulator)</title>"
                f"<h1>{html.escape(params['client_id'])} wants to access your Google Account</h1>"
                f"<ul>{scopes}</ul>"
                f'<form method="post" action="{AUTHORIZE_PATH}/decision">'
                f'<input type="hidden" name="ticket" value="{ticket}">'
                '<button name="decision" value="allow">Allow</button> '
                '<button name="decision" value="deny">Cancel</button></form>'
            )
            return HTMLResponse(page)
        return decide(params, state.settings.consent == "approve", consent_shown)

    @router.post(AUTHORIZE_PATH + "/decision")
    async def decision(request: Request) -> Response:
        form = await request.form()
        with state.lock:
            params = state.pending_consents.pop(str(form.get("ticket", "")), None)
        if params is None:
            return _error_page(400, "invalid_request", "Unknown or used consent ticket.")
        return decide(params, form.get("decision") == "allow", True)

    @router.post(TOKEN_PATH)
    @router.post("/o/oauth2/token")
    async def token(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        authorization = request.headers.get("authorization", "")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip()).decode()
            except ValueError:
                decoded = ":"
            basic_id, _, basic_secret = decoded.partition(":")
            client_id = urllib.parse.unquote_plus(basic_id)
            client_secret = urllib.parse.unquote_plus(basic_secret)

        def run() -> dict[str, object]:
            client = state.authenticate_client(client_id, client_secret)
            grant_type = form.get("grant_type")
            if grant_type == "authorization_code":
                return state.exchange_code(
                    client, form.get("code"), form.get("redirect_uri"), form.get("code_verifier")
                )
            if grant_type == "refresh_token":
                return state.refresh(client, form.get("refresh_token"), form.get("scope"))
            if not grant_type:
                raise OAuthError("invalid_request", "Missing required parameter: grant_type")
            raise OAuthError("unsupported_grant_type", f"Invalid grant_type: {grant_type}")

        result = await run_in_threadpool(run)
        return JSONResponse(result, headers={"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"})

    @router.post(REVOKE_PATH)
    async def revoke(request: Request) -> Response:
        token_value = request.query_params.get("token")
        if token_value is None:
            token_value = str((await request.form()).get("token", ""))
        if not state.revoke_token(token_value):
            return JSONResponse({"error": "invalid_token", "error_description": "Bad Request"}, status_code=400)
        return JSONResponse({})

    return router
