"""Graph change-notification subscriptions of one connection, and reading what Graph posts back.

- :class:`Subscriptions` creates (``POST /subscriptions`` on ``/me/events`` with a random
  ``clientState`` and a lifecycle URL), renews (``PATCH`` of ``expirationDateTime``),
  reauthorizes and deletes them through the connection's :class:`GraphClient` (same token,
  retries and mailbox limit as the mirror). Outlook event subscriptions live at most 4,230
  minutes; :data:`LIFETIME` stays a little under that (clocks differ) and a renewal a day keeps a
  subscription alive with two days to spare.
- :func:`parse_notifications` reads a notification POST; :func:`client_state_matches` compares
  the secret in constant time. Storing subscriptions and routing notifications to a sync are the
  webhook's and the jobs' business.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.outlook.client import GraphClient
from integrations.outlook.errors import NotFound, RequestRejected

MAX_LIFETIME = timedelta(minutes=4230)
LIFETIME = MAX_LIFETIME - timedelta(minutes=30)
RENEW_EVERY = timedelta(days=1)
RESOURCE = "/me/events"
CHANGE_TYPES = "created,updated,deleted"
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


class SubscriptionGone(RequestRejected):
    """Graph no longer knows the subscription (expired or removed): make a new one."""


@dataclass(frozen=True)
class Subscription:
    id: str
    expires_at: datetime  # aware UTC


@dataclass(frozen=True)
class Notification:
    """One item of a notification or lifecycle POST (nothing in it is trusted before the clientState check)."""

    subscription_id: str
    client_state: str
    change_type: str | None = None  # created / updated / deleted
    lifecycle_event: str | None = None  # reauthorizationRequired / subscriptionRemoved / missed


def new_client_state() -> str:
    """A fresh random secret for one subscription (Graph allows 128 characters; this is 64)."""
    return secrets.token_urlsafe(48)


def client_state_matches(received: str, expected: str) -> bool:
    return hmac.compare_digest(received.encode(), expected.encode())


def _utc(text: Any) -> datetime:
    moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.0000000Z")


class Subscriptions:
    """Subscription calls for one connection."""

    def __init__(self, client: GraphClient) -> None:
        self.client = client

    def create(self, notification_url: str, lifecycle_url: str, client_state: str, now: datetime) -> Subscription:
        """Subscribe to the mailbox's events; Graph validates both URLs before answering."""
        body = {
            "changeType": CHANGE_TYPES,
            "notificationUrl": notification_url,
            "lifecycleNotificationUrl": lifecycle_url,
            "resource": RESOURCE,
            "expirationDateTime": _z(now + LIFETIME),
            "clientState": client_state,
            "latestSupportedTlsVersion": "v1_2",
        }
        answer = self.client.send("POST", "/subscriptions", json=body) or {}
        return Subscription(str(answer["id"]), _utc(answer["expirationDateTime"]))

    def renew(self, subscription_id: str, now: datetime) -> Subscription:
        try:
            answer = self.client.send(
                "PATCH", f"/subscriptions/{subscription_id}", json={"expirationDateTime": _z(now + LIFETIME)}
            )
        except NotFound:
            raise SubscriptionGone(f"subscription {subscription_id} no longer exists") from None
        return Subscription(subscription_id, _utc((answer or {})["expirationDateTime"]))

    def reauthorize(self, subscription_id: str) -> None:
        try:
            self.client.send("POST", f"/subscriptions/{subscription_id}/reauthorize")
        except NotFound:
            raise SubscriptionGone(f"subscription {subscription_id} no longer exists") from None

    def delete(self, subscription_id: str) -> None:
        with contextlib.suppress(NotFound):  # already gone: what deleting wanted
            self.client.send("DELETE", f"/subscriptions/{subscription_id}")


def parse_notifications(body: Any) -> list[Notification]:
    """The items of a notification or lifecycle POST; malformed items are left out."""
    values = body.get("value") if isinstance(body, Mapping) else None
    out: list[Notification] = []
    for item in values if isinstance(values, list) else []:
        if not isinstance(item, Mapping):
            continue
        sub_id, state = item.get("subscriptionId"), item.get("clientState")
        if not isinstance(sub_id, str) or not isinstance(state, str):
            continue
        event = item.get("lifecycleEvent")
        change = item.get("changeType")
        out.append(
            Notification(
                subscription_id=sub_id,
                client_state=state,
                change_type=str(change) if isinstance(change, str) else None,
                lifecycle_event=str(event) if event in LIFECYCLE_EVENTS else None,
            )
        )
    return out


__all__ = [
    "CHANGE_TYPES",
    "LIFETIME",
    "MAX_LIFETIME",
    "RENEW_EVERY",
    "RESOURCE",
    "Notification",
    "Subscription",
    "SubscriptionGone",
    "Subscriptions",
    "client_state_matches",
    "new_client_state",
    "parse_notifications",
]
