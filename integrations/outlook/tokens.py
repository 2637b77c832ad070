"""One MSAL app and token cache per connection (STYLE 6): silent acquisition, persisted cache.

- The connection's MSAL ``SerializableTokenCache`` is loaded from its (encrypted) settings; after
  every acquisition that changed it (a refresh, a rotated refresh token) the serialized cache is
  handed to ``on_cache_change`` so the next process starts from it.
- ``acquire_token_silent`` serves the cached access token while it has more than five minutes
  left and otherwise redeems the refresh token; MSAL does that itself.
- One refresh at a time per connection (STYLE 6, like the Google token manager): within a process,
  every provider built for the same account and app shares one manager
  (:meth:`TokenManager.for_connection`), so the sync, the subscription upkeep and a write-back
  running at once take turns on one lock and one cache. The second caller finds the token the
  first one just got (MSAL serves it from the shared cache) instead of redeeming the refresh token
  again and storing a competing cache. A forced refresh after a 401 is skipped when another
  caller already replaced the token that was refused.
- One refresh at a time across worker processes too: when the connection's settings can be
  updated under its database lock (``ProviderContext.update_settings_locked``, the mechanism of
  the Zoom token source), a refresh runs holding that lock. Under it the stored cache is read
  again; if another process already stored an access token that is still good, it is used and
  the token endpoint is not called; otherwise the refresh is made and its cache stored before
  the lock is released, so no process writes back a cache older than the one stored. The lock
  is held only around the token request (MSAL's timeout bounds it), never around a sync.
- A cache stored by someone else (another process, a reconnect) is adopted when the next provider
  is built from it; a cache the manager already held (settings a job read before the refresh) is
  recognised as older and not reloaded, so it does not bring back the token just replaced.
- A refused refresh (``invalid_grant``, ``interaction_required``: consent revoked, password reset,
  refresh token expired) is :class:`ReauthorizationRequired` and says what to do; any other failure
  of the identity platform is temporary (:class:`GraphUnavailable`).

MSAL resolves the authority (OIDC discovery, a network call) when the app is built, so the app
is built lazily on first use, inside the same error handling.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, ClassVar
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
# MSAL's own rule: a cached access token with less than five minutes left is renewed.
_EXPIRY_MARGIN_SECONDS = 5 * 60
# How long a token MSAL handed out is used again without asking MSAL (at most; never within the
# margin above of its expiry). MSAL's silent path searches the whole cache on every call, and a
# mirror makes one Graph request per page and per series master: that search was on the critical
# path of every page. After this long MSAL is asked again, and sees another process's refresh.
_MEMO_SECONDS = 60.0
# Seconds MSAL waits for the identity platform: a refresh may hold the connection's lock this long.
IDENTITY_TIMEOUT = 30.0

SettingsStep = Callable[[dict[str, Any]], "dict[str, Any] | None"]
# ``locked(step)``: ``step(settings as stored now)`` under the connection's lock, what it returns stored.
LockedSettings = Callable[[SettingsStep], dict[str, Any]]


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
            timeout=IDENTITY_TIMEOUT,
            instance_discovery=urlsplit(options.authority).hostname in _MICROSOFT_HOSTS,
        )
    except ValueError as exc:
        raise InvalidSettings(f"ALLIANCE_MS_AUTHORITY is not usable: {exc}") from None
    except requests.RequestException as exc:
        raise GraphUnavailable(f"could not reach the Microsoft sign-in service ({type(exc).__name__})") from None


def _digest(serialized: str) -> str:
    return hashlib.sha256(serialized.encode()).hexdigest()


class TokenManager:
    """Access tokens for one connection's account, from its own MSAL token cache."""

    _shared: ClassVar[weakref.WeakValueDictionary[tuple[str, str, str], TokenManager]] = weakref.WeakValueDictionary()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        settings: OutlookSettings,
        options: OutlookOptions,
        *,
        on_cache_change: Callable[[str], None] | None = None,
        locked_settings: LockedSettings | None = None,
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
        # Digests of every serialized cache this manager loaded or handed out for storage: a stored
        # cache among them is one it has moved past (a job built from settings read before its refresh).
        self._held: deque[str] = deque([_digest(settings.token_cache)], maxlen=32)
        self.on_cache_change = on_cache_change
        self.locked_settings = locked_settings
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.RLock()
        # (access token, time.monotonic() until which it is handed out without MSAL)
        self._memo: tuple[str, float] | None = None

    @classmethod
    def for_connection(
        cls,
        settings: OutlookSettings,
        options: OutlookOptions,
        *,
        on_cache_change: Callable[[str], None] | None = None,
        locked_settings: LockedSettings | None = None,
    ) -> TokenManager:
        """The process's manager of this account and app (created on first use, shared while alive)."""
        key = (options.authority, settings.client_id, settings.home_account_id)
        with cls._shared_lock:
            manager = cls._shared.get(key)
            if manager is None or manager.options != options:
                manager = cls(settings, options, on_cache_change=on_cache_change, locked_settings=locked_settings)
                cls._shared[key] = manager
                return manager
        manager._offer(settings.token_cache)
        if on_cache_change is not None:
            manager.on_cache_change = on_cache_change
        if locked_settings is not None:
            manager.locked_settings = locked_settings
        return manager

    def _offer(self, stored: str) -> None:
        # A cache this manager never held (another process refreshed, or the therapist reconnected
        # with a new grant) is newer: adopt it. One it held is at most as new as what it holds now.
        digest = _digest(stored)
        with self._lock:
            if digest not in self._held:
                self.cache.deserialize(stored)
                self._held.append(digest)
                self._memo = None  # a reconnect's new grant: its tokens, not the memo's

    def _access_tokens(self) -> list[dict[str, Any]]:
        return list(
            self.cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN, query={"home_account_id": self.account_id})
        )

    def _current_token(self) -> str | None:
        tokens = self._access_tokens()
        return str(tokens[0].get("secret")) if tokens else None

    def _serves_from_cache(self) -> bool:
        """Whether MSAL would answer from the cache, without asking the token endpoint."""
        now = time.time()
        for entry in self._access_tokens():
            try:
                expires_on = int(entry["expires_on"])
                refresh_on = int(entry.get("refresh_on") or expires_on)
            except (KeyError, TypeError, ValueError):
                continue
            if expires_on - now >= _EXPIRY_MARGIN_SECONDS and refresh_on >= now:
                return True
        return False

    def access_token(self, *, force_refresh: bool = False, refused: str | None = None) -> str:
        """A valid access token for Graph (refreshed through the cache's refresh token when needed).

        ``refused`` is the token Graph just answered 401 to: a forced refresh is skipped when
        another caller has already replaced it while this one waited for the lock.
        """
        memo = self._memo
        if memo is not None and not force_refresh and time.monotonic() < memo[1]:
            return memo[0]
        with self._lock:
            if self._app is None:
                self._app = build_app(self.options, self.cache)
            app = self._app
            locked = self.locked_settings
            if force_refresh and refused is not None and self._current_token() not in (None, refused):
                force_refresh = False  # a thread of this process refreshed meanwhile; no lock needed
            try:
                if locked is not None and (force_refresh or not self._serves_from_cache()):
                    result = self._acquire_locked(app, locked, force_refresh=force_refresh, refused=refused)
                else:
                    try:
                        result = self._acquire(app, force_refresh=force_refresh, refused=refused)
                    finally:
                        self._persist()
            except requests.RequestException as exc:
                raise GraphUnavailable(
                    f"could not reach the Microsoft sign-in service ({type(exc).__name__})"
                ) from None
        if result and result.get("access_token"):
            token = str(result["access_token"])
            self._remember(token, result.get("expires_in"))
            return token
        self._memo = None
        error = str((result or {}).get("error") or "no_token")
        if result is None or error in _REAUTH_ERRORS:
            # Only the error code: descriptions can carry the user's name or e-mail.
            log.info("Microsoft refused to renew a token (%s)", error)
            raise ReauthorizationRequired(
                f"Microsoft no longer grants access to this calendar ({error}); {RECONNECT_HINT}"
            )
        raise GraphUnavailable(f"the Microsoft sign-in service failed ({error}); the next sync tries again")

    def _remember(self, token: str, expires_in: Any) -> None:
        try:
            usable = float(expires_in) - _EXPIRY_MARGIN_SECONDS
        except (TypeError, ValueError):
            usable = 0.0
        self._memo = (token, time.monotonic() + min(usable, _MEMO_SECONDS)) if usable > 0 else None

    def _acquire(
        self, app: msal.ConfidentialClientApplication, *, force_refresh: bool, refused: str | None
    ) -> dict[str, Any] | None:
        """MSAL's silent acquisition on the cache as it is now (called with the lock held)."""
        account = next((a for a in app.get_accounts() if a.get("home_account_id") == self.account_id), None)
        if account is None:
            raise ReauthorizationRequired(
                f"the Microsoft account of this calendar is missing from its sign-in data; {RECONNECT_HINT}"
            )
        if force_refresh and refused is not None and self._current_token() not in (None, refused):
            force_refresh = False  # someone refreshed meanwhile; their token is the new one
        result: dict[str, Any] | None = app.acquire_token_silent_with_error(
            list(SCOPES), account=account, force_refresh=force_refresh
        )
        return result

    def _acquire_locked(
        self,
        app: msal.ConfidentialClientApplication,
        locked: LockedSettings,
        *,
        force_refresh: bool,
        refused: str | None,
    ) -> dict[str, Any] | None:
        """A refresh under the connection's database lock, on the cache as stored now."""
        outcome: list[dict[str, Any] | None] = []

        def step(stored: dict[str, Any]) -> dict[str, Any] | None:
            cache = stored.get("token_cache")
            if isinstance(cache, str) and cache:
                self._offer(cache)  # another process's refresh (or a reconnect) stored since we read
            # A token that another process stored, still good: used without calling the endpoint.
            # A forced refresh (Graph refused a token) is skipped when the refused one was replaced.
            replaced = refused is not None and self._current_token() not in (None, refused)
            force = force_refresh and not replaced
            outcome.append(self._acquire(app, force_refresh=force, refused=None))
            if not self.cache.has_state_changed:
                return None
            serialized = self.cache.serialize()
            self.cache.has_state_changed = False
            self._held.append(_digest(serialized))
            return {**stored, "token_cache": serialized}

        locked(step)
        return outcome[-1] if outcome else None

    def _persist(self) -> None:
        # Called with the lock held: the cache is written by one caller at a time, in order.
        if not self.cache.has_state_changed:
            return
        serialized = self.cache.serialize()
        self._held.append(_digest(serialized))
        callback = self.on_cache_change
        if callback is None:
            return
        try:
            callback(serialized)
        except Exception as exc:  # storing is best effort: the token in memory still works
            # Only the kind of failure: a database error's text may quote the sealed settings.
            log.warning(
                "could not store a refreshed Microsoft token (%s); the next run refreshes again", type(exc).__name__
            )


__all__ = ["IDENTITY_TIMEOUT", "LockedSettings", "SettingsStep", "TokenManager", "build_app"]
