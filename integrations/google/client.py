"""The Calendar API client: google-api-python-client underneath, typed errors and retries on top.

Why not ``execute(num_retries=N)``: the library's own retry ignores ``Retry-After``, sleeps
``random() * 2**n`` seconds with no bound on the total, and cannot be observed in tests
(reference/providers.md 1.1, 6). Here every request runs through :meth:`CalendarClient._call`:

- 403/429 ``rateLimitExceeded`` / ``userRateLimitExceeded``, 5xx, timeouts and dropped connections
  are retried with exponential backoff and jitter, waiting at least what ``Retry-After`` asks,
  within a bounded number of attempts and a bounded total wait; then :class:`GoogleUnavailable`;
- 403 ``quotaExceeded`` is not retried (Google's usage limits: more requests only prolong it);
- 401 after google-auth's own refresh-and-retry, ``invalid_grant`` on refresh and missing scopes
  become :class:`ReauthorizationRequired`; 410 becomes :class:`SyncTokenExpired`.

The waiting goes through an injectable ``sleep`` so tests observe the waits without sleeping.
"""

from __future__ import annotations

import email.utils
import functools
import http.client
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import google_auth_httplib2
import httplib2
from google.auth.exceptions import RefreshError, TransportError
from googleapiclient.discovery import build
from googleapiclient.errors import HttpError
from googleapiclient.model import JsonModel

from integrations.base.json_body import parse_json
from integrations.google.errors import (
    RECONNECT_HINT,
    GoogleUnavailable,
    NotFound,
    PreconditionFailed,
    QuotaExceeded,
    RateLimited,
    ReauthorizationRequired,
    RequestRejected,
    SyncTokenExpired,
)
from integrations.google.http_pool import shared_pool
from integrations.google.tokens import TokenManager

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 30.0
_RATE_LIMIT_REASONS = frozenset({"rateLimitExceeded", "userRateLimitExceeded"})
_SCOPE_REASONS = frozenset({"insufficientPermissions", "insufficientScopes", "ACCESS_TOKEN_SCOPE_INSUFFICIENT"})
# Transport failures worth another attempt: timeouts, resets, refused or half-closed connections.
_TRANSIENT_EXCEPTIONS = (TimeoutError, OSError, http.client.HTTPException, httplib2.HttpLib2Error, TransportError)


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may keep trying; ``sleep`` and ``random`` are injectable for tests."""

    max_attempts: int = 6  # in total, the first one included
    base_delay: float = 1.0  # seconds before the first retry; doubled for each further one
    max_delay: float = 32.0
    max_total_delay: float = 90.0  # the sum of the waits of one request
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, retry: int, retry_after: float | None) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        backoff = min(self.max_delay, self.base_delay * 2**retry)
        # "Equal jitter": at least half the backoff, so clients that failed together spread out
        # without any of them retrying almost at once.
        jittered: float = backoff / 2 + self.random() * backoff / 2
        return max(jittered, retry_after) if retry_after is not None else jittered


@dataclass(frozen=True)
class _Failure:
    error: Exception
    retryable: bool
    retry_after: float | None = None
    what: str = ""


def _retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta-seconds or an HTTP date (RFC 9110 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _reason(exc: HttpError) -> str:
    """``error.errors[0].reason`` of Google's JSON error body ("" when absent)."""
    try:
        body = json.loads(exc.content)
        errors = body["error"].get("errors") or []
        if errors and isinstance(errors[0], dict):
            return str(errors[0].get("reason", ""))
        details = body["error"].get("details") or []
        for detail in details:  # newer-style errors carry the reason in google.rpc.ErrorInfo
            if isinstance(detail, dict) and detail.get("reason"):
                return str(detail["reason"])
    except (ValueError, KeyError, TypeError, AttributeError):
        pass
    return ""


def _classify_http(exc: HttpError, calendar_id: str) -> _Failure:
    status = exc.status_code
    reason = _reason(exc)
    what = f"HTTP {status}{' ' + reason if reason else ''}"
    retry_after = _retry_after(exc.resp.get("retry-after") if exc.resp is not None else None)
    if status == 401:
        # google-auth already refreshed and retried: the grant itself is no longer accepted.
        return _Failure(
            ReauthorizationRequired(f"Google no longer accepts this connection's sign-in; {RECONNECT_HINT}"), False
        )
    if status == 403 and reason == "quotaExceeded":
        return _Failure(
            QuotaExceeded(
                "Google Calendar quota exceeded (usage limits); paused until the next scheduled sync, "
                "nothing in the mirror was changed",
                retry_after=retry_after,
            ),
            False,
        )
    if status == 429 or (status == 403 and reason in _RATE_LIMIT_REASONS):
        return _Failure(
            RateLimited(f"Google kept rate-limiting the requests ({what})", retry_after=retry_after),
            True,
            retry_after,
            what,
        )
    if status == 403 and reason in _SCOPE_REASONS:
        return _Failure(
            ReauthorizationRequired(f"this connection's Google grant lacks calendar access; {RECONNECT_HINT}"), False
        )
    if status == 410:
        return _Failure(SyncTokenExpired(f"Google asks for a full sync ({reason or 'gone'})"), False)
    if status is not None and status >= 500:
        failing = GoogleUnavailable(f"Google Calendar kept failing ({what})", retry_after=retry_after)
        return _Failure(failing, True, retry_after, what)
    if status == 412:
        return _Failure(PreconditionFailed(f"the Google event changed meanwhile ({what})"), False)
    if status == 404:
        return _Failure(
            NotFound(
                f"the Google calendar {calendar_id!r} was not found (deleted, or no longer shared with this account)"
            ),
            False,
        )
    return _Failure(RequestRejected(f"Google refused the request ({what})"), False)


def _classify_refresh(exc: RefreshError) -> _Failure:
    if exc.retryable:  # the token endpoint's own 5xx / temporarily_unavailable
        return _Failure(GoogleUnavailable("Google's sign-in service kept failing"), True, None, "token refresh")
    code = ""
    if len(exc.args) > 1 and isinstance(exc.args[1], dict):
        code = str(exc.args[1].get("error", ""))
    detail = f" ({code})" if code else ""
    return _Failure(
        ReauthorizationRequired(f"Google refused to renew this connection's access{detail}: {RECONNECT_HINT}"),
        False,
    )


@dataclass(frozen=True)
class _CalendarApi:
    events: Any
    channels: Any


class _JsonModel(JsonModel):  # type: ignore[misc]  # the library ships no type hints
    """The library's JSON model, its responses parsed through :func:`parse_json` (orjson).

    A full listing's pages are ~2.5 MB each; the library decodes each to text and parses it with
    the standard library while the sync's other threads wait for the interpreter lock. The same
    result otherwise, the body left as text when it is not JSON, as the library does.
    """

    def deserialize(self, content: bytes | str) -> Any:
        try:
            body = parse_json(content)
        except ValueError:
            return content.decode("utf-8") if isinstance(content, bytes) else content
        if self._data_wrapper and isinstance(body, dict) and "data" in body:
            body = body["data"]
        return body


@functools.lru_cache(maxsize=8)
def _calendar_api(api_url: str) -> _CalendarApi:
    """The Calendar API's resources for one base URL, built once per process.

    Building the service from the discovery document costs ~0.7 ms of CPU and each
    ``service.events()`` another ~1.6 ms (the library makes a new resource, every method of the
    document included, each time): more than a sync with nothing new spends on anything else. A
    resource only makes request objects, so connections share them and every request is executed
    with its own connection's authorized ``http`` (``HttpRequest.execute(http=...)``).
    """
    # static_discovery: the discovery document ships in the wheel, no network; api_endpoint
    # replaces the whole base URL (service path included). No batch requests: they ignore it.
    # The plain Http given here is never used to send (see above); it keeps build() from
    # looking for application default credentials.
    service = build(
        "calendar",
        "v3",
        http=httplib2.Http(),
        model=_JsonModel(),
        client_options={"api_endpoint": api_url},
        static_discovery=True,
        cache_discovery=False,
    )
    return _CalendarApi(events=service.events(), channels=service.channels())


class CalendarClient:
    """The few Calendar API calls the mirror makes, with retries and typed errors."""

    def __init__(
        self,
        tokens: TokenManager,
        *,
        api_url: str,
        timeout: float = TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.tokens = tokens
        self.retry = retry or RetryPolicy()
        # The process's pool of kept-alive connections (http_pool) instead of build(credentials=...)'s
        # own Http per client, i.e. per sync; AuthorizedHttp sets this connection's token on each
        # request and refreshes on 401 through the token manager's credentials. Every request is
        # executed with it: the API resources themselves are shared (_calendar_api).
        self._http = google_auth_httplib2.AuthorizedHttp(tokens.credentials, http=shared_pool(timeout))
        self._api = _calendar_api(api_url)

    def list_events(self, calendar_id: str, **params: Any) -> dict[str, Any]:
        """One page of ``events.list`` (``None``-valued parameters are left out)."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self._call(calendar_id, lambda: self._api.events.list(calendarId=calendar_id, **clean))

    def list_instances(self, calendar_id: str, event_id: str, **params: Any) -> dict[str, Any]:
        """One page of ``events.instances`` of a recurring event."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self._call(
            calendar_id, lambda: self._api.events.instances(calendarId=calendar_id, eventId=event_id, **clean)
        )

    def watch_events(self, calendar_id: str, body: dict[str, Any], **params: Any) -> dict[str, Any]:
        """``events.watch``: open a push channel on the calendar's events (returns the Channel)."""
        clean = {k: v for k, v in params.items() if v is not None}
        return self._call(calendar_id, lambda: self._api.events.watch(calendarId=calendar_id, body=body, **clean))

    def stop_channel(self, channel_id: str, resource_id: str) -> None:
        """``channels.stop``: stop a push channel this client's grant opened."""
        self._call("", lambda: self._api.channels.stop(body={"id": channel_id, "resourceId": resource_id}))

    def get_event(self, calendar_id: str, event_id: str) -> dict[str, Any]:
        """``events.get`` of one event (its current etag included)."""
        return self._call(calendar_id, lambda: self._api.events.get(calendarId=calendar_id, eventId=event_id))

    def patch_event(
        self, calendar_id: str, event_id: str, body: dict[str, Any], *, if_match: str | None = None
    ) -> dict[str, Any]:
        """``events.patch`` of one event, conditional on its etag when ``if_match`` is given (412 otherwise)."""

        def make_request() -> Any:
            request = self._api.events.patch(calendarId=calendar_id, eventId=event_id, body=body, sendUpdates="none")
            if if_match is not None:
                # googleapiclient has no parameter for it; headers are set on the request object.
                request.headers["If-Match"] = if_match
            return request

        return self._call(calendar_id, make_request)

    def _call(self, calendar_id: str, make_request: Callable[[], Any]) -> dict[str, Any]:
        waited = 0.0
        attempt = 0
        while True:
            attempt += 1
            try:
                self.tokens.ensure_fresh()
                result = make_request().execute(http=self._http, num_retries=0)
            except HttpError as exc:
                failure = _classify_http(exc, calendar_id)
            except RefreshError as exc:
                failure = _classify_refresh(exc)
            except _TRANSIENT_EXCEPTIONS as exc:
                failure = _Failure(
                    GoogleUnavailable(f"Google Calendar did not answer ({type(exc).__name__})"),
                    True,
                    None,
                    type(exc).__name__,
                )
            else:
                # A 204 comes back as "" in practice (not {}): callers always get a dict.
                return result if isinstance(result, dict) else {}
            if not failure.retryable:
                raise failure.error
            if attempt >= self.retry.max_attempts:
                raise failure.error
            delay = self.retry.delay(attempt - 1, failure.retry_after)
            if waited + delay > self.retry.max_total_delay:
                # Retry-After beyond what one sync may wait: report now, the next sync tries again.
                raise failure.error
            log.warning("Google Calendar: %s; retrying in %.1f s (attempt %d)", failure.what, delay, attempt + 1)
            self.retry.sleep(delay)
            waited += delay


__all__ = ["TIMEOUT_SECONDS", "CalendarClient", "RetryPolicy"]
