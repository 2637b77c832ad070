"""One MSAL app and token cache per connection (STYLE 6): silent acquisition, persisted cache.

- The connection's MSAL ``SerializableTokenCache`` is loaded from its (encrypted) settings; after
  every acquisition that changed it (a refresh, a rotated refresh token) the serialized cache is
  handed to ``on_cache_change`` so the next process starts from it.
- ``acquire_token_silent`` serves the cached access token while it has more than five minutes
  left and otherwise redeems the refresh token; MSAL does that itself. Calls go through one lock.
- A refused refresh (``invalid_grant``, ``interaction_required``: consent revoked, password reset,
  refresh token expired) is :class:`ReauthorizationRequired` and says what to do; any other failure
  of the identity platform is temporary (:class:`GraphUnavailable`).

MSAL resolves the authority (OIDC discovery, a network call) when the app is built, so the app
is built lazily on first use, inside the same error handling.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import msal
import requests

from integrations.base.protocol import InvalidSettings
from integrations.outlook.errors import RECONNECT_HINT, GraphUnavailable, ReauthorizationRequired
from integrations.outlook.settings import SCOPES, OutlookOptions, OutlookSettings
from integrations.outlook.transport import identity_session

log = logging.getLogger(__name__)

# Hosts of Microsoft's own clouds: MSAL's instance discovery knows them. Any other authority (a
# sovereign proxy, the sandbox) must not be sent to login.microsoftonline.com for validation.
_MICROSOFT_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoftonline.us",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
    }
)
# Answers of the token endpoint that only the user can fix by signing in again.
_REAUTH_ERRORS = frozenset({"invalid_grant", "interaction_required", "consent_required", "login_required"})


def build_app(
    options: OutlookOptions, cache: msal.SerializableTokenCache | None = None
) -> msal.ConfidentialClientApplication:
    """MSAL's confidential client for the operator's app registration (resolves the authority)."""
    client_id, secret = options.require_client()
    if not options.authority.startswith("https://"):
        raise InvalidSettings("ALLIANCE_MS_AUTHORITY must be an https:// URL with a tenant, e.g. .../common")
    try:
        return msal.ConfidentialClientApplication(
            client_id,
            client_credential=secret,
            authority=options.authority,
            token_cache=cache,
            http_client=identity_session(options.ca_bundle),
            instance_discovery=urlsplit(options.authority).hostname in _MICROSOFT_HOSTS,
        )
    except ValueError as exc:
        raise InvalidSettings(f"ALLIANCE_MS_AUTHORITY is not usable: {exc}") from None
    except requests.RequestException as exc:
        raise GraphUnavailable(f"could not reach the Microsoft sign-in service ({type(exc).__name__})") from None


class TokenManager:
    """Access tokens for one connection's account, from its own MSAL token cache."""

    def __init__(
        self,
        settings: OutlookSettings,
        options: OutlookOptions,
        *,
        on_cache_change: Callable[[str], None] | None = None,
    ) -> None:
        if options.client_id != settings.client_id:
            raise InvalidSettings(
                f"this Outlook connection was consented to app {settings.client_id!r}; set ALLIANCE_MS_CLIENT_ID "
                "and ALLIANCE_MS_CLIENT_SECRET to that app, or connect again"
            )
        self.options = options
        self.account_id = settings.home_account_id
        self.cache = msal.SerializableTokenCache()
        self.cache.deserialize(settings.token_cache)
        self._on_cache_change = on_cache_change
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()

    def access_token(self, *, force_refresh: bool = False) -> str:
        """A valid access token for Graph (refreshed through the cache's refresh token when needed)."""
        with self._lock:
            if self._app is None:
                self._app = build_app(self.options, self.cache)
            account = next((a for a in self._app.get_accounts() if a.get("home_account_id") == self.account_id), None)
            if account is None:
                raise ReauthorizationRequired(
                    f"the Microsoft account of this calendar is missing from its sign-in data; {RECONNECT_HINT}"
                )
            try:
                result: dict[str, Any] | None = self._app.acquire_token_silent_with_error(
                    list(SCOPES), account=account, force_refresh=force_refresh
                )
            except requests.RequestException as exc:
                raise GraphUnavailable(
                    f"could not reach the Microsoft sign-in service ({type(exc).__name__})"
                ) from None
            finally:
                self._persist()
        if result and result.get("access_token"):
            return str(result["access_token"])
        error = str((result or {}).get("error") or "no_token")
        if result is None or error in _REAUTH_ERRORS:
            # Only the error code: descriptions can carry the user's name or e-mail.
            log.info("Microsoft refused to renew a token (%s)", error)
            raise ReauthorizationRequired(
                f"Microsoft no longer grants access to this calendar ({error}); {RECONNECT_HINT}"
            )
        raise GraphUnavailable(f"the Microsoft sign-in service failed ({error}); the next sync tries again")

    def _persist(self) -> None:
        if self.cache.has_state_changed and self._on_cache_change is not None:
            self._on_cache_change(self.cache.serialize())


__all__ = ["TokenManager", "build_app"]
