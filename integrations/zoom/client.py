"""zoomus, wrapped so that its known defects cannot bite (shared/reference/providers.md 3.5).

- No token in the constructor: zoomus's own ``ZoomClient.__init__`` fetches one with no timeout
  and swallows failures. :class:`_Zoomus` skips that; every call takes a token from a
  :class:`~integrations.zoom.tokens.TokenSource` (timeout, refresh before expiry).
- A 401 with code 124 (expired/invalid token) is retried once with a fresh token; a second 401
  means the credentials themselves are gone (:class:`ZoomAuthError`).
- zoomus returns raw ``requests.Response`` objects: :func:`_check` turns every non-2xx into a
  typed error (429 with its Retry-After and the daily-limit case, 3001, 5xx, other 4xx).
- zoomus formats ``start_time`` with ``strftime("...Z")`` without converting to UTC: every start
  is converted to UTC here before zoomus sees it.
"""

from __future__ import annotations

import email.utils
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from zoomus import ZoomClient, util
from zoomus.client import COMPONENT_CLASSES

from integrations.zoom.errors import (
    ZoomAuthError,
    ZoomMeetingInProgress,
    ZoomMeetingNotFound,
    ZoomRateLimited,
    ZoomRejected,
    ZoomUnavailable,
)
from integrations.zoom.tokens import TokenSource

__all__ = ["ZoomApi", "parse_zoom_time"]

Clock = Callable[[], datetime]


class _Zoomus(ZoomClient):  # type: ignore[misc]  # zoomus ships no type information (Any base)
    """zoomus's client without the constructor's token fetch; the token is set per call."""

    def __init__(self, base_uri: str, timeout: int) -> None:
        util.ApiClient.__init__(self, base_uri=base_uri, timeout=timeout)
        self.components = {}
        self.config = {
            "client_id": None,
            "client_secret": None,
            "api_account_id": None,
            "data_type": "json",
            "version": util.API_VERSION_2,
            "base_uri": self.base_uri,
            "oauth_uri": None,
            "token": None,
        }
        for key, cls in COMPONENT_CLASSES[util.API_VERSION_2].items():
            self.components[key] = cls(base_uri=self.base_uri, config=self.config, timeout=timeout)


def parse_zoom_time(value: Any) -> datetime | None:
    """Zoom's ``yyyy-MM-ddTHH:mm:ssZ`` as an aware UTC datetime (None when absent or odd)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _next_midnight(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date() + timedelta(days=1), datetime.min.time(), tzinfo=UTC)


def _retry_after(value: str | None, now: datetime) -> datetime | None:
    """Retry-After as seconds, an HTTP date, or (as Zoom's docs show for daily limits) a timestamp."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return now + timedelta(seconds=int(value))
    stamp = parse_zoom_time(value)
    if stamp is not None:
        return stamp
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _check(response: requests.Response, now: datetime) -> requests.Response:
    status = response.status_code
    if 200 <= status < 300:
        return response
    body = _body(response)
    code = body.get("code")
    message = str(body.get("message", ""))[:200]
    if status == 429:
        daily = response.headers.get("X-RateLimit-Type", "").lower().startswith("daily") or "daily" in message.lower()
        retry_at = _retry_after(response.headers.get("Retry-After"), now)
        if daily and retry_at is None:
            # The per-host limit resets at 00:00 UTC; Zoom often omits the headers on it.
            retry_at = _next_midnight(now)
        kind = "daily create/update limit of the host" if daily else "rate limit"
        raise ZoomRateLimited(f"Zoom {kind} reached (429)", retry_at=retry_at, daily=daily)
    if status == 401:
        raise ZoomAuthError(f"Zoom rejected the credentials (401, code {code})")
    if code == 3001:
        # Zoom answers 404 with it, but the code is what its documentation promises.
        raise ZoomMeetingNotFound("the Zoom meeting does not exist (3001)")
    if code == 3002:
        # DELETE of a meeting someone is in: "cannot delete this meeting since it is in progress".
        raise ZoomMeetingInProgress("the Zoom meeting is in progress (3002)")
    if status >= 500:
        raise ZoomUnavailable(f"Zoom answered {status}")
    raise ZoomRejected(f"Zoom refused the request ({status}, code {code}: {message})")


class ZoomApi:
    """The four meeting calls Alliance makes, through zoomus, with typed errors."""

    def __init__(self, api_url: str, tokens: TokenSource, *, timeout: int = 15, clock: Clock | None = None) -> None:
        self._zoomus = _Zoomus(api_url, timeout)
        self._tokens = tokens
        self._clock: Clock = clock or (lambda: datetime.now(UTC))
        # zoomus keeps the token in a config dict shared by its components: one call at a time.
        self._lock = threading.Lock()

    def _call(self, fn: Callable[..., requests.Response], **kwargs: Any) -> requests.Response:
        with self._lock:
            for attempt in (1, 2):
                token = self._tokens.token()
                self._zoomus.config["token"] = token
                try:
                    response = fn(**kwargs)
                except requests.RequestException as exc:
                    raise ZoomUnavailable(f"Zoom request failed ({type(exc).__name__})") from None
                if response.status_code == 401 and attempt == 1 and _body(response).get("code") == 124:
                    # Expired or invalid token (zoomus itself would keep sending it): fetch anew once.
                    self._tokens.invalidate(token)
                    continue
                return _check(response, self._clock())
        raise AssertionError("unreachable")  # pragma: no cover

    @property
    def _meeting(self) -> Any:
        return self._zoomus.meeting

    def create_meeting(self, user_id: str, *, start: datetime, **fields: Any) -> dict[str, Any]:
        """POST /users/{user_id}/meetings; ``start`` must be aware (sent as UTC with ``Z``)."""
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        # zoomus appends "Z" to whatever clock time it is given: give it UTC.
        start_utc = start.astimezone(UTC)
        return _body(self._call(self._meeting.create, user_id=user_id, start_time=start_utc, **fields))

    def get_meeting(self, meeting_id: str) -> dict[str, Any]:
        return _body(self._call(self._meeting.get, id=meeting_id))

    def list_meetings(self, user_id: str, *, kind: str = "scheduled") -> Iterator[dict[str, Any]]:
        """Every meeting of the user, page by page."""
        token = ""
        while True:
            params: dict[str, Any] = {"user_id": user_id, "type": kind, "page_size": 300}
            if token:
                params["next_page_token"] = token
            body = _body(self._call(self._meeting.list, **params))
            meetings = body.get("meetings")
            yield from (m for m in meetings if isinstance(m, dict)) if isinstance(meetings, list) else ()
            token = str(body.get("next_page_token") or "")
            if not token:
                return

    def update_meeting(self, meeting_id: str, *, start: datetime | None = None, **fields: Any) -> None:
        """PATCH /meetings/{id} (204)."""
        if start is not None:
            if start.tzinfo is None:
                raise ValueError("start must be timezone-aware")
            fields["start_time"] = start.astimezone(UTC)
        self._call(self._meeting.update, id=meeting_id, **fields)

    def delete_meeting(self, meeting_id: str) -> None:
        """DELETE /meetings/{id} (204)."""
        self._call(self._meeting.delete, id=meeting_id)
