"""User-level Zoom OAuth (authorization code grant) with authlib.

The therapist approves the practice's Zoom app; the code is exchanged for an access token (one
hour) and a refresh token that Zoom rotates on every refresh (``tokens.UserTokenSource`` keeps
and persists the newest). Meetings are then created for ``me``.
"""

from __future__ import annotations

import time
from typing import Any

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from integrations.zoom.errors import ZoomAuthError, ZoomUnavailable
from integrations.zoom.factory import ZoomOptions, token_url

__all__ = ["authorization_url", "exchange_code"]


def _session(options: ZoomOptions, redirect_uri: str) -> OAuth2Session:
    if not options.user_client_id or not options.user_client_secret:
        raise ZoomAuthError("ALLIANCE_ZOOM_CLIENT_ID / ALLIANCE_ZOOM_CLIENT_SECRET are not set")
    return OAuth2Session(
        options.user_client_id,
        options.user_client_secret,
        redirect_uri=redirect_uri,
        token_endpoint_auth_method="client_secret_basic",
    )


def authorization_url(options: ZoomOptions, redirect_uri: str, state: str) -> str:
    """Where to send the therapist's browser to approve the app."""
    url, _ = _session(options, redirect_uri).create_authorization_url(
        options.oauth_url.rstrip("/") + "/oauth/authorize", state=state
    )
    return str(url)


def exchange_code(options: ZoomOptions, code: str, redirect_uri: str, *, timeout: float = 10.0) -> dict[str, Any]:
    """The stored credentials of a user-level connection, from the authorization code."""
    try:
        token = _session(options, redirect_uri).fetch_token(
            token_url(options.oauth_url), code=code, grant_type="authorization_code", timeout=timeout
        )
    except OAuthError as exc:
        raise ZoomAuthError(f"Zoom refused the authorization code ({exc.error})") from None
    except requests.RequestException as exc:
        raise ZoomUnavailable(f"Zoom token request failed ({type(exc).__name__})") from None
    expires_at = token.get("expires_at") or int(time.time()) + int(token.get("expires_in", 3600))
    return {
        "access_token": token["access_token"],
        "refresh_token": token["refresh_token"],
        "expires_at": int(expires_at),
        "user_id": "me",
    }
