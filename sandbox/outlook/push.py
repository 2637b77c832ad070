"""Graph change notifications: subscriptions, the validation handshake, batched delivery, lifecycle events.

From Microsoft's change-notification docs: ``POST /subscriptions`` validates the notification
URL (and the lifecycle URL) first: Graph POSTs ``?validationToken=<opaque>`` with a ``text/plain``
body and wants 200, ``text/plain`` and the URL-decoded token back within 10 s, else no
subscription. Outlook event subscriptions last at most 4,230 minutes (longer asks are refused);
``PATCH`` renews, ``DELETE`` removes, ``/reauthorize`` answers a ``reauthorizationRequired``.
Notifications are POSTed as ``{"value": [...]}`` (several per POST when they pile up), each with
the subscription's ``clientState``; lifecycle events go to the lifecycle URL.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from sandbox.outlook.times import iso_z

if TYPE_CHECKING:
    from sandbox.outlook.state import OutlookState

VALIDATION_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 10.0
EVENT_RESOURCES = frozenset({"/me/events", "me/events"})


@dataclass
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: datetime
    needs_reauthorization: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": iso_z(self.expiration),
            "applicationId": "8a3e2c4f-0000-4000-8000-a11ace000001",
            "latestSupportedTlsVersion": "v1_2",
        }


@dataclass
class Delivery:
    """One POST the emulator made to a notification or lifecycle URL."""

    url: str
    items: list[dict[str, Any]]
    status: int | None
    at: float = field(default_factory=time.monotonic)


def validate_url(url: str) -> str | None:
    """The handshake; returns why it failed, or None."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    separator = "&" if "?" in url else "?"
    try:
        answer = httpx.post(
            f"{url}{separator}validationToken={quote(token)}",
            headers={"Content-Type": "text/plain; charset=utf-8"},
            content=b"",
            timeout=VALIDATION_TIMEOUT,
        )
    except httpx.HTTPError as exc:
        return f"could not reach {url} ({type(exc).__name__})"
    if answer.status_code != 200:
        return f"{url} answered {answer.status_code}"
    if not answer.headers.get("content-type", "").startswith("text/plain"):
        return f"{url} did not answer text/plain"
    if answer.text != token:
        return f"{url} did not echo the decoded validation token"
    return None


class Notifier:
    """Delivers queued notifications in batches from a background thread."""

    def __init__(self, state: OutlookState) -> None:
        self.state = state
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._wake = threading.Condition()
        self._stop = False
        self._thread: threading.Thread | None = None
        self.deliveries: list[Delivery] = []

    def start(self) -> None:
        if self._thread is None:
            self._stop = False
            self._thread = threading.Thread(target=self._run, name="outlook-notifier", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stop = True
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def enqueue(self, url: str, item: dict[str, Any]) -> None:
        with self._wake:
            self._pending.append((url, item))
            self._wake.notify_all()

    def _run(self) -> None:
        with httpx.Client(timeout=DELIVERY_TIMEOUT) as client:
            while True:
                with self._wake:
                    while not self._pending and not self._stop:
                        self._wake.wait(0.5)
                    if self._stop:
                        return
                # Let a burst pile up, then send it batched per URL.
                time.sleep(self.state.settings.notification_batch_seconds)
                with self._wake:
                    batch, self._pending = self._pending, []
                by_url: dict[str, list[dict[str, Any]]] = {}
                for url, item in batch:
                    by_url.setdefault(url, []).append(item)
                for url, items in by_url.items():
                    self._post(client, url, items)

    def _post(self, client: httpx.Client, url: str, items: list[dict[str, Any]]) -> None:
        try:
            answer = client.post(
                url, content=json.dumps({"value": items}), headers={"Content-Type": "application/json; charset=utf-8"}
            )
            status: int | None = answer.status_code
        except httpx.HTTPError:
            status = None  # Graph would retry for up to 4 hours; the emulator records the failure
        with self.state.lock:
            self.deliveries.append(Delivery(url, items, status))


def notification(
    sub: Subscription, change_type: str, event_id: str, etag: str, user_oid: str, tenant: str
) -> dict[str, Any]:
    resource = f"Users/{user_oid}/Events/{event_id}"
    return {
        "id": None,
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": iso_z(sub.expiration),
        "changeType": change_type,
        "resource": resource,
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": resource,
            "@odata.etag": etag,
            "id": event_id,
        },
        "clientState": sub.client_state,
        "tenantId": tenant,
    }


def lifecycle(sub: Subscription, event: str, tenant: str) -> dict[str, Any]:
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": iso_z(sub.expiration),
        "tenantId": tenant,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }


def max_expiration(now: datetime, minutes: int) -> datetime:
    return now + timedelta(minutes=minutes)


__all__ = [
    "EVENT_RESOURCES",
    "Delivery",
    "Notifier",
    "Subscription",
    "lifecycle",
    "max_expiration",
    "notification",
    "validate_url",
]
