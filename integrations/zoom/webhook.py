"""Zoom webhook deliveries: signature check, URL validation answer, payload -> call event.

Zoom signs ``"v0:{x-zm-request-timestamp}:{raw body}"`` with HMAC-SHA256 under the app's secret
token and sends ``x-zm-signature: v0=<hex>``. The check runs over the raw bytes (re-serialised
JSON differs from Zoom's), in constant time, and refuses timestamps more than five minutes away
(a replayed delivery). Payloads keep nothing that names a person: participants become a role.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any

from core.video.calls import CallKind, IncomingCallEvent
from integrations.zoom.client import parse_zoom_time

__all__ = [
    "MAX_SKEW_SECONDS",
    "URL_VALIDATION",
    "InvalidDelivery",
    "MalformedEvent",
    "parse_call_event",
    "url_validation_answer",
    "verify_signature",
]

MAX_SKEW_SECONDS = 300
URL_VALIDATION = "endpoint.url_validation"

_KINDS = {
    "meeting.started": CallKind.STARTED,
    "meeting.ended": CallKind.ENDED,
    "meeting.participant_joined": CallKind.JOINED,
    "meeting.participant_left": CallKind.LEFT,
    "meeting.deleted": CallKind.DELETED,
}


class InvalidDelivery(Exception):
    """Not signed by Zoom with our secret, or too old: refuse (401), store nothing."""


class MalformedEvent(ValueError):
    """Signed, but not a Zoom event we can read (400)."""


def _sign(secret: bytes, message: bytes) -> str:
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def verify_signature(secret: str, timestamp: str | None, signature: str | None, body: bytes, now: float) -> None:
    """Raise :class:`InvalidDelivery` unless ``signature`` is Zoom's v0 signature of ``body``, sent recently."""
    if not timestamp or not signature:
        raise InvalidDelivery("missing x-zm-signature or x-zm-request-timestamp")
    try:
        sent = int(timestamp)
    except ValueError:
        raise InvalidDelivery("x-zm-request-timestamp is not a Unix time") from None
    expected = "v0=" + _sign(secret.encode(), b"v0:" + timestamp.encode() + b":" + body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise InvalidDelivery("signature mismatch")
    # Checked after the signature (which covers the timestamp), so a forger learns nothing from it.
    if abs(now - sent) > MAX_SKEW_SECONDS:
        raise InvalidDelivery("stale timestamp")


def url_validation_answer(secret: str, body: dict[str, Any]) -> dict[str, str]:
    """``{"plainToken", "encryptedToken"}`` for Zoom's endpoint validation challenge."""
    payload = body.get("payload")
    plain = payload.get("plainToken") if isinstance(payload, dict) else None
    if not isinstance(plain, str) or not plain:
        raise MalformedEvent("endpoint.url_validation without payload.plainToken")
    return {"plainToken": plain, "encryptedToken": _sign(secret.encode(), plain.encode())}


def _role(obj: dict[str, Any], participant: dict[str, Any]) -> str:
    host = obj.get("host_id")
    ids = {participant.get("id"), participant.get("participant_user_id")}
    return "host" if host and host in ids else "client"


def parse_call_event(body: dict[str, Any]) -> IncomingCallEvent | None:
    """The call event of a Zoom delivery; None for events Alliance does not use."""
    event = body.get("event")
    if not isinstance(event, str):
        raise MalformedEvent("no event name")
    kind = _KINDS.get(event)
    if kind is None:
        return None
    payload = body.get("payload")
    obj = payload.get("object") if isinstance(payload, dict) else None
    event_ts = body.get("event_ts")
    if not isinstance(obj, dict) or not isinstance(event_ts, int) or isinstance(event_ts, bool):
        raise MalformedEvent(f"{event} without payload.object or event_ts")
    meeting_id, uuid = obj.get("id"), obj.get("uuid")
    # Webhooks carry the meeting id as a string (REST as a number): accept both, keep a string.
    if not isinstance(meeting_id, str | int) or isinstance(meeting_id, bool) or not isinstance(uuid, str):
        raise MalformedEvent(f"{event} without meeting id or uuid")
    sent_at = datetime.fromtimestamp(event_ts / 1000, UTC)
    role: str | None = None
    if kind is CallKind.STARTED:
        at = parse_zoom_time(obj.get("start_time"))
    elif kind is CallKind.ENDED:
        at = parse_zoom_time(obj.get("end_time"))
    elif kind in (CallKind.JOINED, CallKind.LEFT):
        participant = obj.get("participant")
        if not isinstance(participant, dict):
            raise MalformedEvent(f"{event} without payload.object.participant")
        at = parse_zoom_time(participant.get("join_time" if kind is CallKind.JOINED else "leave_time"))
        role = _role(obj, participant)
    else:
        at = sent_at
    return IncomingCallEvent(
        provider="zoom",
        event=event,
        kind=kind,
        meeting_id=str(meeting_id),
        meeting_uuid=uuid,
        event_ts=event_ts,
        at=at or sent_at,
        role=role,
    )
