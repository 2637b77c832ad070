"""The Microsoft identity platform's v2.0 endpoints MSAL talks to.

- ``GET /{tenant}/v2.0/.well-known/openid-configuration``: the OIDC discovery document (MSAL reads
  ``authorization_endpoint`` and ``token_endpoint`` from it).
- ``GET /{tenant}/oauth2/v2.0/authorize``: auto-consents and redirects back with ``code`` and
  ``state`` (or ``error=access_denied``), remembering the PKCE challenge, the nonce and the scopes.
- ``POST /{tenant}/oauth2/v2.0/token``: ``authorization_code`` (one-time code, redirect URI and
  PKCE verifier checked) and ``refresh_token`` grants; the client authenticates with HTTP Basic
  or ``client_secret`` in the form. Answers carry ``client_info`` and an ``id_token`` whose
  ``nonce`` is the value the authorize request carried.
"""

from __future__ import annotations

import base64
import html
from typing import Any
from urllib.parse import unquote_plus, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from sandbox.outlook.state import TENANT_ID, OAuthFailure, OutlookState


def _basic_auth(header: str | None) -> tuple[str, str] | None:
    if not header or not header.lower().startswith("basic "):
        return None
    try:
        user, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return None
    return unquote_plus(user), unquote_plus(password)


def identity_router(state: OutlookState) -> APIRouter:
    router = APIRouter()

    @router.get("/{tenant}/v2.0/.well-known/openid-configuration")
    def discovery(tenant: str) -> dict[str, Any]:
        base = state.base_url
        return {
            "issuer": f"{base}/{TENANT_ID}/v2.0",
            "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/{tenant}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "code_challenge_methods_supported": ["plain", "S256"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        }

    @router.get("/{tenant}/oauth2/v2.0/authorize", response_model=None)
    def authorize(request: Request, tenant: str) -> Response:
        q = request.query_params
        client_id = q.get("client_id", "")
        redirect_uri = q.get("redirect_uri", "")
        if client_id not in state.clients:
            # Errors about the client or the redirect URI are shown, never redirected.
            return HTMLResponse(
                f"<p>AADSTS700016: Application with identifier '{html.escape(client_id)}' was not found.</p>", 400
            )
        if not redirect_uri.startswith(("http://127.0.0.1", "http://localhost", "https://")):
            return HTMLResponse("<p>AADSTS50011: The redirect URI specified in the request does not match.</p>", 400)
        answer: dict[str, str] = {}
        if q.get("response_type") != "code":
            answer = {"error": "unsupported_response_type", "error_description": "AADSTS70005: response_type"}
        elif state.settings.consent != "allow":
            answer = {"error": "access_denied", "error_description": "AADSTS65004: User declined to consent."}
        else:
            scopes = tuple(q.get("scope", "").split())
            method = q.get("code_challenge_method", "plain")
            answer = {
                "code": state.new_code(
                    client_id, redirect_uri, scopes, q.get("code_challenge"), method, q.get("nonce")
                ),
                "session_state": "sandbox-session",
            }
        if "state" in q:
            answer["state"] = q["state"]
        if q.get("response_mode") == "form_post":
            fields = "".join(
                f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">' for k, v in answer.items()
            )
            return HTMLResponse(
                f'<form method="post" action="{html.escape(redirect_uri)}">{fields}</form>'
                "<script>document.forms[0].submit()</script>"
            )
        separator = "&" if "?" in redirect_uri else "?"
        return RedirectResponse(redirect_uri + separator + urlencode(answer), status_code=302)

    @router.post("/{tenant}/oauth2/v2.0/token", response_model=None)
    async def token(request: Request, tenant: str) -> Response:
        form = await request.form()
        fields = {k: str(v) for k, v in form.items()}
        basic = _basic_auth(request.headers.get("authorization"))
        client_id = basic[0] if basic else fields.get("client_id", "")
        secret = basic[1] if basic else fields.get("client_secret")
        try:
            state.check_client(client_id, secret)
            grant_type = fields.get("grant_type")
            if grant_type == "authorization_code":
                result = state.redeem_code(
                    fields.get("code", ""),
                    client_id,
                    fields.get("redirect_uri", ""),
                    fields.get("code_verifier"),
                    state.base_url,
                )
            elif grant_type == "refresh_token":
                result = state.redeem_refresh(fields.get("refresh_token", ""), client_id, state.base_url)
            else:
                raise OAuthFailure("unsupported_grant_type", f"AADSTS70003: grant_type {grant_type!r}")
        except OAuthFailure as exc:
            return JSONResponse(exc.body(), status_code=exc.status)
        if fields.get("client_info") != "1":
            result.pop("client_info", None)
        return JSONResponse(result, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return router


__all__ = ["identity_router"]
