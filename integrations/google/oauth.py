"""Google's OAuth 2.0 code flow for installed apps, with PKCE (authlib).

:func:`begin` composes the authorization URL (``access_type=offline`` and ``prompt=consent``:
Google only returns a refresh token when the consent screen was shown); :func:`finish` checks
the redirect Google sent back (``state``, errors) and exchanges the code for tokens. Receiving
the redirect (a loopback listener) and opening the browser belong to the caller.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.requests_client import OAuth2Session

from integrations.google.settings import SCOPES, GoogleOptions

EXCHANGE_TIMEOUT = 30.0


class AuthorizationFailed(Exception):
    """The sign-in did not produce a usable grant; the message is one line for the user."""


@dataclass(frozen=True)
class AuthorizationRequest:
    """One sign-in attempt: where to send the user, and what must come back."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str


def _session(options: GoogleOptions, redirect_uri: str) -> OAuth2Session:
    if not options.client_id or not options.client_secret:
        raise AuthorizationFailed(
            "no Google OAuth client configured: set ALLIANCE_GOOGLE_CLIENT_ID and ALLIANCE_GOOGLE_CLIENT_SECRET "
            "(a 'Desktop app' client from the Google Cloud console), or use --token-file"
        )
    return OAuth2Session(
        client_id=options.client_id,
        client_secret=options.client_secret,
        scope=" ".join(SCOPES),
        redirect_uri=redirect_uri,
        code_challenge_method="S256",
    )


def begin(
    options: GoogleOptions, redirect_uri: str, *, state: str | None = None, code_verifier: str | None = None
) -> AuthorizationRequest:
    """The authorization URL for a new sign-in, with a fresh ``state`` and PKCE verifier.

    A web page passes its own ``state`` and ``code_verifier``, derived from the browser's session
    (portal/connect_google.py), so nothing has to be stored between the redirect and the callback.
    """
    verifier = code_verifier or secrets.token_urlsafe(64)  # 86 characters: within PKCE's 43..128
    with _session(options, redirect_uri) as session:
        url, state = session.create_authorization_url(
            options.auth_url,
            state=state or secrets.token_urlsafe(24),
            code_verifier=verifier,
            access_type="offline",
            prompt="consent",
            include_granted_scopes="true",
        )
    return AuthorizationRequest(url=url, state=state, code_verifier=verifier, redirect_uri=redirect_uri)


def check_callback(request: AuthorizationRequest, callback_url: str) -> None:
    """Refuse a redirect that is not the answer to ``request`` or that reports an error."""
    query = parse_qs(urlsplit(callback_url).query)
    state = (query.get("state") or [""])[0]
    if not secrets.compare_digest(state, request.state):
        raise AuthorizationFailed("the sign-in answer does not belong to this request (state mismatch)")
    error = (query.get("error") or [""])[0]
    if error:
        if error == "access_denied":
            raise AuthorizationFailed("access to the Google calendar was not granted (access_denied)")
        raise AuthorizationFailed(f"Google refused the sign-in ({error})")
    if not (query.get("code") or [""])[0]:
        raise AuthorizationFailed("Google's answer carries no authorization code")


def finish(options: GoogleOptions, request: AuthorizationRequest, callback_url: str) -> dict[str, Any]:
    """Exchange the code in ``callback_url``; returns raw connection settings (tokens, client id, scopes)."""
    check_callback(request, callback_url)
    try:
        with _session(options, request.redirect_uri) as session:
            token = session.fetch_token(
                options.token_url,
                authorization_response=callback_url,
                state=request.state,
                code_verifier=request.code_verifier,
                timeout=EXCHANGE_TIMEOUT,
            )
    except AuthlibBaseError as exc:
        raise AuthorizationFailed(f"Google refused the authorization code ({exc.error})") from None
    except requests.RequestException as exc:
        raise AuthorizationFailed(f"could not reach Google's token endpoint ({type(exc).__name__})") from None
    if not token.get("refresh_token"):
        # Google only issues one on the consent screen; prompt=consent asks for it every time.
        raise AuthorizationFailed(
            "Google returned no refresh token; remove Alliance's access in your Google Account and retry"
        )
    expires_at = token.get("expires_at")
    expiry = datetime.fromtimestamp(int(expires_at), UTC).isoformat() if expires_at else None
    granted = str(token.get("scope") or "").split()
    if granted and not set(SCOPES) <= set(granted):
        # Google's consent screen lets people untick permissions one by one.
        raise AuthorizationFailed(
            "calendar access was not granted on Google's consent screen; connect again and allow it"
        )
    return {
        "refresh_token": token["refresh_token"],
        "token": token.get("access_token"),
        "expiry": expiry,
        "client_id": options.client_id,
        "scopes": granted or list(SCOPES),
    }


__all__ = ["AuthorizationFailed", "AuthorizationRequest", "begin", "check_callback", "finish"]
