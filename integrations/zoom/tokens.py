"""Access tokens for Zoom, managed so that zoomus's token defects cannot bite.

zoomus 1.2.1 fetches a Server-to-Server token once, in its constructor, with no timeout, swallows
failures (then sends ``Bearer None``) and never refreshes it: after an hour every call is 401 /
code 124 (shared/reference/providers.md 3.5). Here a token source per credential

- fetches with a timeout and turns failures into typed errors,
- refreshes before expiry (``margin``) and again when Zoom answers 401/124 (``invalidate``),
- refreshes one at a time (a lock), so concurrent callers share one new token,
- for user-level apps, persists each rotated refresh token through ``on_refresh`` at once
  (Zoom invalidates the old refresh token when it issues a new one).

Server-to-Server sources are shared per credential within a process (:func:`s2s_source`), so 500
meetings provisioned in one hour cost one token request.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError

from integrations.zoom.errors import ZoomAuthError, ZoomRateLimited, ZoomUnavailable

__all__ = ["S2STokenSource", "TokenSource", "UserTokenSource", "s2s_source"]

REFRESH_MARGIN = timedelta(minutes=5)
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class TokenSource(Protocol):
    def token(self) -> str:
        """A bearer token valid for at least the margin."""
        ...

    def invalidate(self, token: str) -> None:
        """Zoom rejected ``token`` (401/124): the next :meth:`token` fetches a new one."""
        ...


class S2STokenSource:
    """``grant_type=account_credentials`` tokens of one Server-to-Server app."""

    def __init__(
        self,
        token_url: str,
        account_id: str,
        client_id: str,
        client_secret: str,
        *,
        timeout: float = 10.0,
        margin: timedelta = REFRESH_MARGIN,
        clock: Clock = _utcnow,
    ) -> None:
        self._url, self._account, self._id, self._secret = token_url, account_id, client_id, client_secret
        self._timeout, self._margin, self._clock = timeout, margin, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires: datetime | None = None
        self.fetches = 0

    def token(self) -> str:
        with self._lock:
            if self._token is not None and self._expires is not None and self._clock() < self._expires - self._margin:
                return self._token
            self._token, self._expires = self._fetch()
            return self._token

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._token == token:
                self._token = None

    def _fetch(self) -> tuple[str, datetime]:
        self.fetches += 1
        try:
            response = requests.post(
                self._url,
                data={"grant_type": "account_credentials", "account_id": self._account},
                auth=(self._id, self._secret),
                timeout=self._timeout,
            )
        except requests.RequestException as exc:
            raise ZoomUnavailable(f"Zoom token request failed ({type(exc).__name__})") from None
        body = _json(response)
        if response.status_code == 429:
            raise ZoomRateLimited("Zoom token endpoint rate limited")
        if response.status_code >= 500:
            raise ZoomUnavailable(f"Zoom token endpoint answered {response.status_code}")
        token = body.get("access_token")
        if response.status_code != 200 or not isinstance(token, str) or not token:
            # invalid_client / deactivated app / wrong account: nothing a retry fixes.
            reason = body.get("reason") or body.get("error") or f"HTTP {response.status_code}"
            raise ZoomAuthError(f"Zoom refused the app credentials: {reason}")
        expires_in = body.get("expires_in")
        ttl = int(expires_in) if isinstance(expires_in, int | float | str) and str(expires_in).isdigit() else 3600
        return token, self._clock() + timedelta(seconds=ttl)


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


_shared: dict[str, S2STokenSource] = {}
_shared_lock = threading.Lock()


def s2s_source(token_url: str, account_id: str, client_id: str, client_secret: str) -> S2STokenSource:
    """The process-wide token source of one Server-to-Server credential."""
    key = hashlib.sha256("\0".join((token_url, account_id, client_id, client_secret)).encode()).hexdigest()
    with _shared_lock:
        source = _shared.get(key)
        if source is None:
            source = _shared[key] = S2STokenSource(token_url, account_id, client_id, client_secret)
        return source


OnRefresh = Callable[[dict[str, Any]], None]
# Runs a step on the credentials as stored now, under the connection's lock across processes, and
# stores what the step returns (core.video.service.update_credentials_locked).
RefreshStep = Callable[[dict[str, Any]], "dict[str, Any] | None"]
Guard = Callable[[RefreshStep], dict[str, Any]]
_TOKEN_KEYS = ("access_token", "refresh_token", "expires_at")


class UserTokenSource:
    """Tokens of a user-level OAuth grant (authlib), refresh tokens rotated and persisted."""

    def __init__(
        self,
        token_url: str,
        client_id: str,
        client_secret: str,
        tokens: dict[str, Any],
        *,
        on_refresh: OnRefresh,
        guard: Guard | None = None,
        timeout: float = 10.0,
        margin: timedelta = REFRESH_MARGIN,
        clock: Clock = _utcnow,
    ) -> None:
        self._url, self._timeout, self._margin, self._clock = token_url, timeout, margin, clock
        self._session = OAuth2Session(client_id, client_secret, token_endpoint_auth_method="client_secret_basic")
        self._tokens = dict(tokens)
        self._on_refresh = on_refresh
        self._guard = guard
        self._lock = threading.Lock()
        self.refreshes = 0  # refresh requests this source sent

    def _valid(self, tokens: dict[str, Any] | None = None) -> bool:
        tokens = self._tokens if tokens is None else tokens
        expires_at = tokens.get("expires_at")
        return (
            isinstance(tokens.get("access_token"), str)
            and isinstance(expires_at, int | float)
            and self._clock() < datetime.fromtimestamp(expires_at, UTC) - self._margin
        )

    def token(self) -> str:
        with self._lock:
            if not self._valid():
                self._refresh()
            return str(self._tokens["access_token"])

    def invalidate(self, token: str) -> None:
        with self._lock:
            if self._tokens.get("access_token") == token:
                self._tokens["expires_at"] = 0

    def _refresh(self) -> None:
        if self._guard is None:
            tokens = self._fetch(self._tokens.get("refresh_token"))
            # Persist first: Zoom has already invalidated the old refresh token.
            self._on_refresh(tokens)
            self._tokens.update(tokens)
            return
        mine = {k: self._tokens.get(k) for k in ("access_token", "refresh_token")}

        def step(stored: dict[str, Any]) -> dict[str, Any] | None:
            # Under the connection's lock, on the credentials as stored now: another worker (or
            # process) may have refreshed while we waited, and spent the refresh token we hold.
            theirs = {k: stored.get(k) for k in ("access_token", "refresh_token")}
            if theirs != mine and self._valid(stored):
                return None  # use theirs: no request, nothing spent
            return {**stored, **self._fetch(stored.get("refresh_token"))}

        result = self._guard(step)
        self._tokens.update({k: result[k] for k in _TOKEN_KEYS if k in result})

    def _fetch(self, refresh_token: Any) -> dict[str, Any]:
        """One refresh grant; the new tokens (Zoom rotates the refresh token every time)."""
        if not isinstance(refresh_token, str):
            raise ZoomAuthError("no Zoom refresh token stored")
        self.refreshes += 1
        try:
            new = self._session.refresh_token(self._url, refresh_token=refresh_token, timeout=self._timeout)
        except OAuthError as exc:
            # invalid_grant: the therapist removed the app or the token was already rotated away.
            raise ZoomAuthError(f"Zoom refused the refresh token ({exc.error})") from None
        except requests.RequestException as exc:
            raise ZoomUnavailable(f"Zoom token refresh failed ({type(exc).__name__})") from None
        return {
            "access_token": new["access_token"],
            "refresh_token": new.get("refresh_token", refresh_token),
            "expires_at": int(new.get("expires_at") or self._clock().timestamp() + int(new.get("expires_in", 3600))),
        }
