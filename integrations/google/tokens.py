"""One token manager per credential (STYLE 6, after cal.com's OAuthManager).

- Refreshes *before* the access token expires (a margin wider than google-auth's own 3 min 45 s),
  so a listing never starts on a token about to lapse.
- One refresh at a time: every refresh — ours, or the one google-auth's ``AuthorizedHttp`` starts
  by itself on a 401 — goes through one lock, and a caller that waited for another thread's
  refresh reuses its result instead of refreshing again.
- Persists what a refresh returns (access token, expiry, a rotated refresh token) through a
  callback, so the next process starts from the new token instead of refreshing again.

Within one process, providers built for the same credential share one manager
(:meth:`TokenManager.for_credential`). ``invalid_grant`` surfaces as google-auth's
``RefreshError``; the client turns it into ``ReauthorizationRequired``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import google_auth_httplib2
from google.oauth2.credentials import Credentials

from integrations.google.http_pool import shared_pool

log = logging.getLogger(__name__)

REFRESH_MARGIN = timedelta(minutes=5)


@dataclass(frozen=True, slots=True)
class Tokens:
    """What a refresh produced: the access token, its expiry (aware UTC) and the refresh token."""

    token: str | None
    expiry: datetime | None
    refresh_token: str | None


OnRefresh = Callable[[Tokens], None]


class _ManagedCredentials(Credentials):
    """google-auth credentials whose every refresh goes through the owning manager."""

    manager: TokenManager | None = None

    def refresh(self, request: Any) -> None:
        manager = self.manager
        if manager is None:
            super().refresh(request)
            return
        manager._refresh_once(self.token, lambda: super(_ManagedCredentials, self).refresh(request))


def _naive_utc(value: datetime | None) -> datetime | None:
    # google-auth compares expiries with a naive UTC "now".
    return value.astimezone(UTC).replace(tzinfo=None) if value is not None else None


class TokenManager:
    """Owns the access token of one OAuth credential."""

    _shared: ClassVar[weakref.WeakValueDictionary[str, TokenManager]] = weakref.WeakValueDictionary()
    _shared_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        *,
        token: str | None,
        refresh_token: str,
        expiry: datetime | None,
        token_uri: str,
        client_id: str,
        client_secret: str | None,
        scopes: tuple[str, ...],
        timeout: float = 60.0,
        on_refresh: OnRefresh | None = None,
        margin: timedelta = REFRESH_MARGIN,
    ) -> None:
        self._lock = threading.RLock()
        self._margin = margin
        self._timeout = timeout
        self.on_refresh = on_refresh
        # token_uri goes to the constructor: Credentials.from_authorized_user_info() would force
        # Google's own URL whatever the configuration says (reference/providers.md 1.1).
        credentials = _ManagedCredentials(
            token=token,
            refresh_token=refresh_token,
            token_uri=token_uri,
            client_id=client_id,
            client_secret=client_secret,
            # No scopes on refresh: a refresh then gets exactly what was granted, whereas asking
            # for a scope the grant lacks (an older token file) fails with invalid_scope.
            scopes=None,
            expiry=_naive_utc(expiry),
        )
        credentials.manager = self
        self.scopes = scopes
        self.credentials: Credentials = credentials

    @classmethod
    def for_credential(
        cls,
        *,
        token: str | None,
        refresh_token: str,
        expiry: datetime | None,
        token_uri: str,
        client_id: str,
        client_secret: str | None,
        scopes: tuple[str, ...],
        timeout: float = 60.0,
        on_refresh: OnRefresh | None = None,
    ) -> TokenManager:
        """The process's manager of this credential (created on first use, shared while alive)."""
        key = hashlib.sha256("\0".join((token_uri, client_id, refresh_token)).encode()).hexdigest()
        with cls._shared_lock:
            manager = cls._shared.get(key)
            if manager is None:
                manager = cls(
                    token=token,
                    refresh_token=refresh_token,
                    expiry=expiry,
                    token_uri=token_uri,
                    client_id=client_id,
                    client_secret=client_secret,
                    scopes=scopes,
                    timeout=timeout,
                    on_refresh=on_refresh,
                )
                cls._shared[key] = manager
                return manager
        manager._offer(token, expiry)
        if on_refresh is not None:
            manager.on_refresh = on_refresh
        return manager

    @property
    def tokens(self) -> Tokens:
        creds = self.credentials
        expiry = creds.expiry.replace(tzinfo=UTC) if creds.expiry is not None else None
        return Tokens(creds.token, expiry, creds.refresh_token)

    def _offer(self, token: str | None, expiry: datetime | None) -> None:
        # Another process may have refreshed and stored a token that outlives ours: adopt it.
        with self._lock:
            current = self.tokens.expiry
            if token and expiry is not None and (current is None or expiry > current):
                self.credentials.token = token
                self.credentials.expiry = _naive_utc(expiry)

    def _expiring(self) -> bool:
        creds = self.credentials
        if not creds.token:
            return True
        if creds.expiry is None:
            return False  # unknown expiry: use it until Google answers 401 (then google-auth refreshes)
        expiry: datetime = creds.expiry.replace(tzinfo=UTC)
        return expiry - datetime.now(UTC) <= self._margin

    def ensure_fresh(self) -> None:
        """Refresh now if the access token is missing or expires within the margin."""
        with self._lock:
            if self._expiring():
                self.credentials.refresh(google_auth_httplib2.Request(shared_pool(self._timeout)))

    def _refresh_once(self, stale_token: str | None, refresh: Callable[[], None]) -> None:
        with self._lock:
            creds = self.credentials
            if creds.token != stale_token and not self._expiring():
                return  # another caller refreshed while this one waited for the lock
            refresh()
            tokens = self.tokens
            log.info("refreshed a Google access token (valid until %s)", tokens.expiry)
            callback = self.on_refresh
        if callback is not None:
            try:
                callback(tokens)
            except Exception as exc:  # persisting is best effort: the token in memory still works
                # Only the kind of failure: a database error's text may quote the sealed settings.
                log.warning(
                    "could not store a refreshed Google token (%s); the next run refreshes again", type(exc).__name__
                )


__all__ = ["REFRESH_MARGIN", "OnRefresh", "TokenManager", "Tokens"]
