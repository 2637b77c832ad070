"""The webhook sender: Zoom's delivery format, signature scheme, URL validation and retries.

Each delivery is ``POST`` JSON ``{"event", "event_ts" (ms), "payload": {"account_id", "object"}}``
with ``x-zm-request-timestamp`` (Unix seconds) and ``x-zm-signature`` =
``"v0=" + hex(HMAC-SHA256(secret, "v0:{timestamp}:{raw body}"))``. A delivery not answered with
2xx within ``webhook_timeout`` is retried after each of ``webhook_retry_delays`` (Zoom: 5, 20,
60 minutes), then dropped. The body is serialised once, compactly, and the same bytes are signed
and sent (a receiver must verify the raw bytes, not a re-serialisation).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from sandbox.zoom.state import Meeting, ZoomState, zoom_time

__all__ = ["Delivery", "WebhookSender", "sign"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zoom's v0 signature of one delivery."""
    message = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


@dataclass
class Delivery:
    """One event and every attempt to deliver it (status code or the error text)."""

    event: str
    body: bytes
    attempts: list[int | str] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return any(isinstance(a, int) and 200 <= a < 300 for a in self.attempts)


class WebhookSender:
    """Sends signed events of one :class:`ZoomState` to its ``webhook_url``."""

    def __init__(self, state: ZoomState) -> None:
        self.state = state
        self.deliveries: list[Delivery] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- low level -------------------------------------------------------------------------
    def headers(self, body: bytes, *, timestamp: int | None = None, secret: str | None = None) -> dict[str, str]:
        ts = str(timestamp if timestamp is not None else int(self.state.clock().timestamp()))
        return {
            "content-type": "application/json; charset=utf-8",
            "user-agent": "Zoom Marketplace/1.0a",
            "x-zm-request-timestamp": ts,
            "x-zm-signature": sign(secret if secret is not None else self.state.settings.webhook_secret, ts, body),
            "x-zm-trackingid": "v=2.0&s=" + secrets.token_hex(8),
        }

    def envelope(self, event: str, obj: dict[str, Any], **payload: Any) -> bytes:
        body = {
            "event": event,
            "event_ts": int(self.state.clock().timestamp() * 1000),
            "payload": {"account_id": _account_of(self.state, obj), **payload, "object": obj},
        }
        return json.dumps(body, separators=(",", ":")).encode()

    def post_once(self, body: bytes, headers: dict[str, str] | None = None) -> int | str:
        url = self.state.settings.webhook_url
        if not url:
            raise RuntimeError("no webhook_url configured on the emulator")
        try:
            response = httpx.post(
                url, content=body, headers=headers or self.headers(body), timeout=self.state.settings.webhook_timeout
            )
        except httpx.HTTPError as exc:
            return type(exc).__name__
        return response.status_code

    def deliver(self, event: str, body: bytes, *, duplicates: int = 0, wait: bool = True) -> Delivery:
        """Send ``body``, retrying per the schedule; ``duplicates`` extra copies as Zoom sometimes sends."""
        delivery = Delivery(event, body)
        with self._lock:
            self.deliveries.append(delivery)

        def run() -> None:
            delays = (0.0, *self.state.settings.webhook_retry_delays)
            for delay in delays:
                if delay:
                    time.sleep(delay)
                # A retry is signed anew with the time it is sent.
                outcome = self.post_once(body)
                delivery.attempts.append(outcome)
                if isinstance(outcome, int) and 200 <= outcome < 300:
                    break
            for _ in range(duplicates):
                delivery.attempts.append(self.post_once(body))

        if wait:
            run()
        else:
            thread = threading.Thread(target=run, name="zoom-webhook", daemon=True)
            thread.start()
            self._threads.append(thread)
        return delivery

    def join(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]

    # -- URL validation ----------------------------------------------------------------------
    def validate_endpoint(self) -> bool:
        """Zoom's challenge: the endpoint must echo plainToken and its HMAC-SHA256 hex."""
        plain = secrets.token_urlsafe(16)
        body = json.dumps(
            {
                "payload": {"plainToken": plain},
                "event_ts": int(self.state.clock().timestamp() * 1000),
                "event": "endpoint.url_validation",
            },
            separators=(",", ":"),
        ).encode()
        url = self.state.settings.webhook_url
        if not url:
            raise RuntimeError("no webhook_url configured on the emulator")
        try:
            response = httpx.post(url, content=body, headers=self.headers(body), timeout=3.0)
            answer = response.json()
        except (httpx.HTTPError, ValueError):
            return False
        expected = hmac.new(self.state.settings.webhook_secret.encode(), plain.encode(), hashlib.sha256).hexdigest()
        return (
            response.status_code == 200
            and isinstance(answer, dict)
            and answer.get("plainToken") == plain
            and hmac.compare_digest(str(answer.get("encryptedToken", "")), expected)
        )

    # -- meeting events -------------------------------------------------------------------------
    def meeting_started(self, meeting_id: int, **kw: Any) -> Delivery:
        meeting = self.state.set_status(meeting_id, "started")
        obj = _meeting_object(meeting) | {"start_time": zoom_time(self.state.clock())}
        return self.deliver("meeting.started", self.envelope("meeting.started", obj), **kw)

    def meeting_ended(self, meeting_id: int, *, started_at: datetime | None = None, **kw: Any) -> Delivery:
        meeting = self.state.set_status(meeting_id, "waiting")
        now = self.state.clock()
        obj = _meeting_object(meeting) | {
            "start_time": zoom_time(started_at or meeting.start_time),
            "end_time": zoom_time(now),
        }
        return self.deliver("meeting.ended", self.envelope("meeting.ended", obj), **kw)

    def participant(self, meeting_id: int, *, joined: bool, host: bool, name: str, email: str, **kw: Any) -> Delivery:
        """``meeting.participant_joined`` / ``_left``: the host carries the host's user id as ``id``."""
        with self.state.lock:
            meeting = self.state.meetings[meeting_id]
        now = zoom_time(self.state.clock())
        person: dict[str, Any] = {
            "user_id": str(secrets.randbelow(10**8)),
            "user_name": name,
            "id": meeting.host_id if host else "",
            "participant_uuid": secrets.token_hex(8).upper(),
            "email": email,
            "registrant_id": "",
            "participant_user_id": meeting.host_id if host else "",
        }
        if joined:
            person["join_time"] = now
            event = "meeting.participant_joined"
        else:
            person["leave_time"] = now
            person["leave_reason"] = f"{name} left the meeting."
            event = "meeting.participant_left"
        obj = _meeting_object(meeting) | {"participant": person}
        return self.deliver(event, self.envelope(event, obj), **kw)

    def meeting_deleted_by_host(self, meeting_id: int, **kw: Any) -> Delivery:
        meeting = self.state.delete_by_host(meeting_id)
        host = self.state.users[meeting.host_id]
        body = self.envelope(
            "meeting.deleted",
            _meeting_object(meeting),
            operator=host.email,
            operator_id=host.id,
            operation="single",
        )
        return self.deliver("meeting.deleted", body, **kw)


def _account_of(state: ZoomState, obj: dict[str, Any]) -> str:
    host = state.users.get(str(obj.get("host_id", "")))
    return host.account_id if host else ""


def _meeting_object(meeting: Meeting) -> dict[str, Any]:
    # Webhooks carry the meeting id as a STRING (REST uses an integer).
    return {
        "id": str(meeting.id),
        "uuid": meeting.uuid,
        "host_id": meeting.host_id,
        "topic": meeting.topic,
        "type": meeting.type,
        "start_time": zoom_time(meeting.start_time),
        "timezone": meeting.timezone,
        "duration": meeting.duration,
    }


def utc_now() -> datetime:
    return datetime.now(UTC)
