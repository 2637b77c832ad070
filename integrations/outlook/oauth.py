"""Connecting an Outlook calendar: MSAL's auth code flow with PKCE, or a refresh token handed over.

:func:`begin` starts a sign-in (MSAL makes the PKCE verifier, the ``state`` and the nonce and
keeps them in the flow); :func:`finish` redeems the answer the browser was redirected with.
:func:`from_refresh_token` is the non-interactive path (a server, a test, a migration from
another tool): MSAL redeems the refresh token into a fresh cache. Either way the result is the
connection's settings: MSAL's serialized token cache and the account it holds. Receiving the
redirect (a loopback listener) and opening a browser belong to the caller.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import msal
import requests

from integrations.outlook.settings import SCOPES, OutlookOptions
from integrations.outlook.tokens import build_app


class AuthorizationFailed(Exception):
    """The sign-in did not produce a usable grant; the message is one line for the user."""


@dataclass(frozen=True)
class SignIn:
    """One sign-in attempt: where to send the user, and the MSAL flow that must match the answer."""

    url: str
    flow: dict[str, Any]
    app: msal.ConfidentialClientApplication
    cache: msal.SerializableTokenCache


def begin(options: OutlookOptions, redirect_uri: str) -> SignIn:
    """The authorization URL of a new sign-in (PKCE, state and nonce made by MSAL)."""
    cache = msal.SerializableTokenCache()
    app = build_app(options, cache)
    with warnings.catch_warnings():
        # MSAL recommends form_post for web apps; a desktop sign-in's loopback listener gets a GET
        # and the portal's callback is a GET behind a SameSite=Lax session cookie (a cross-site
        # form POST would arrive without it).
        warnings.filterwarnings("ignore", message="response_mode='form_post' is recommended")
        flow: dict[str, Any] = app.initiate_auth_code_flow(
            list(SCOPES), redirect_uri=redirect_uri, response_mode="query", prompt="select_account"
        )
    return SignIn(url=str(flow["auth_uri"]), flow=flow, app=app, cache=cache)


# What MSAL needs of a flow to redeem its answer (the auth URI itself is not needed again).
FLOW_KEYS = ("state", "redirect_uri", "scope", "code_verifier", "nonce", "claims_challenge")


def flow_to_keep(sign_in: SignIn) -> dict[str, Any]:
    """The part of MSAL's flow a web app keeps (server-side or sealed) between redirect and callback.

    It holds the PKCE verifier and the nonce: keep it secret and bound to the browser's session.
    """
    return {k: sign_in.flow[k] for k in FLOW_KEYS if k in sign_in.flow}


def resume(options: OutlookOptions, kept: dict[str, Any]) -> SignIn:
    """A sign-in rebuilt from :func:`flow_to_keep` (another request, maybe another process) to :func:`finish` it."""
    if not isinstance(kept.get("state"), str) or not isinstance(kept.get("code_verifier"), str):
        raise AuthorizationFailed("the sign-in in progress is incomplete; start again")
    cache = msal.SerializableTokenCache()
    return SignIn(url="", flow=dict(kept), app=build_app(options, cache), cache=cache)


def finish(options: OutlookOptions, sign_in: SignIn, answer: dict[str, str]) -> dict[str, Any]:
    """Redeem the redirect's parameters (``code``, ``state`` or ``error``); returns connection settings."""
    if answer.get("error") == "access_denied":
        raise AuthorizationFailed("access to the Outlook calendar was not granted (access_denied)")
    try:
        result = sign_in.app.acquire_token_by_auth_code_flow(sign_in.flow, answer)
    except ValueError:
        raise AuthorizationFailed("the sign-in answer does not belong to this request (state mismatch)") from None
    except RuntimeError:
        raise AuthorizationFailed("the sign-in answer failed its nonce check") from None
    except requests.RequestException as exc:
        raise AuthorizationFailed(f"could not reach the Microsoft sign-in service ({type(exc).__name__})") from None
    return _settings(options, sign_in.app, sign_in.cache, result)


def from_refresh_token(options: OutlookOptions, refresh_token: str) -> dict[str, Any]:
    """Connection settings from a refresh token obtained elsewhere (for the operator's app)."""
    cache = msal.SerializableTokenCache()
    app = build_app(options, cache)
    try:
        result = app.acquire_token_by_refresh_token(refresh_token.strip(), list(SCOPES))
    except requests.RequestException as exc:
        raise AuthorizationFailed(f"could not reach the Microsoft sign-in service ({type(exc).__name__})") from None
    return _settings(options, app, cache, result)


def _settings(
    options: OutlookOptions,
    app: msal.ConfidentialClientApplication,
    cache: msal.SerializableTokenCache,
    result: dict[str, Any],
) -> dict[str, Any]:
    if "access_token" not in result:
        # The error code only: descriptions can carry the user's e-mail.
        raise AuthorizationFailed(f"Microsoft refused the sign-in ({result.get('error') or 'no token'})")
    granted = {s.rsplit("/", 1)[-1].lower() for s in str(result.get("scope") or "").split()}
    if granted and not {s.lower() for s in SCOPES} <= granted:
        raise AuthorizationFailed("calendar access was not granted on Microsoft's consent screen; connect again")
    accounts = app.get_accounts()
    if len(accounts) != 1:
        # No client_info and no id_token subject: MSAL could not tell whose tokens these are.
        raise AuthorizationFailed("Microsoft's answer did not identify the account; nothing was stored")
    account = accounts[0]
    return {
        "token_cache": cache.serialize(),
        "home_account_id": account["home_account_id"],
        "username": account.get("username") or "",
        "client_id": options.client_id,
    }


__all__ = [
    "FLOW_KEYS",
    "AuthorizationFailed",
    "SignIn",
    "begin",
    "finish",
    "flow_to_keep",
    "from_refresh_token",
    "resume",
]
