"""Graph subscriptions against the emulator: the validation handshake, the 4,230-minute cap, renewal,
batched notifications with clientState, lifecycle events, deletion; through the provider's own Graph client."""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import pytest

from integrations.outlook.errors import RequestRejected
from integrations.outlook.subscriptions import (
    LIFETIME,
    SubscriptionGone,
    Subscriptions,
    client_state_matches,
    new_client_state,
    parse_notifications,
)
from tests.integrations.outlook.world import OutlookWorld, at, timed


@dataclass
class Receiver:
    """A real HTTP endpoint on 127.0.0.1 standing in for Alliance's webhook."""

    url: str
    mode: str = "echo"  # "echo" the decoded token, echo it still "encoded", or answer "500"
    validations: list[str] = field(default_factory=list)
    posts: queue.Queue[tuple[str, dict[str, Any]]] = field(default_factory=queue.Queue)

    def next(self, timeout: float = 10.0) -> tuple[str, dict[str, Any]]:
        return self.posts.get(timeout=timeout)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            rec = holder["r"]
            split = urlsplit(self.path)
            params = dict(parse_qsl(split.query))
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if "validationToken" in params:
                token = params["validationToken"]
                rec.validations.append(token)
                answer = quote(token) if rec.mode == "encoded" else token
                status = 500 if rec.mode == "500" else 200
                self._reply(status, answer.encode(), "text/plain; charset=utf-8")
                return
            rec.posts.put((split.path, json.loads(body)))
            self._reply(202, b"", "text/plain")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["r"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["r"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _subscriptions(outlook: OutlookWorld) -> Subscriptions:
    return Subscriptions(outlook.provider().client)


def _create(outlook: OutlookWorld, receiver: Receiver, state: str) -> Any:
    return _subscriptions(outlook).create(
        f"{receiver.url}/webhooks/outlook?c=7",
        f"{receiver.url}/webhooks/outlook/lifecycle?c=7",
        state,
        datetime.now(UTC),
    )


def test_creating_validates_both_urls_with_the_decoded_token(outlook: OutlookWorld, receiver: Receiver) -> None:
    state = new_client_state()
    sub = _create(outlook, receiver, state)
    assert len(receiver.validations) == 2  # notification URL and lifecycle URL
    assert all(t.startswith("Validation: Testing client application reachability") for t in receiver.validations)
    now = datetime.now(UTC)
    assert now + LIFETIME - timedelta(minutes=1) <= sub.expires_at <= now + timedelta(minutes=4230)
    stored = outlook.state.subscriptions[sub.id]
    assert stored.client_state == state and stored.notification_url.endswith("/webhooks/outlook?c=7")


@pytest.mark.parametrize("mode", ["encoded", "500"])
def test_an_endpoint_failing_the_handshake_gets_no_subscription(
    outlook: OutlookWorld, receiver: Receiver, mode: str
) -> None:
    receiver.mode = mode
    with pytest.raises(RequestRejected, match="400"):
        _create(outlook, receiver, new_client_state())
    assert outlook.state.subscriptions == {}


def test_expirations_beyond_4230_minutes_are_refused(outlook: OutlookWorld, receiver: Receiver) -> None:
    client = outlook.provider().client
    body = {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{receiver.url}/hook",
        "resource": "/me/events",
        "expirationDateTime": (datetime.now(UTC) + timedelta(minutes=4320)).isoformat(),
        "clientState": "x",
    }
    with pytest.raises(RequestRejected, match="ExtensionError"):
        client.send("POST", "/subscriptions", json=body)


def test_edits_arrive_batched_with_the_client_state(outlook: OutlookWorld, receiver: Receiver) -> None:
    state = new_client_state()
    sub = _create(outlook, receiver, state)
    outlook.state.settings.notification_batch_seconds = 0.5  # room for the burst on a busy machine
    first = outlook.seed({"subject": "A", **timed(at(2))})
    outlook.seed({"subject": "B", **timed(at(3))})
    outlook.state.update_event(first["id"], {"subject": "A2"})

    received: list[Any] = []
    while len(received) < 3:
        path, body = receiver.next()
        assert path == "/webhooks/outlook"
        received.extend(parse_notifications(body))
    assert {n.subscription_id for n in received} == {sub.id}
    assert all(client_state_matches(n.client_state, state) for n in received)
    assert sorted(n.change_type or "" for n in received) == ["created", "created", "updated"]
    assert len(outlook.state.notifier.deliveries) < 3  # the burst came in fewer POSTs than changes


def test_renewal_moves_the_expiry_and_a_deleted_subscription_is_gone(outlook: OutlookWorld, receiver: Receiver) -> None:
    subscriptions = _subscriptions(outlook)
    sub = _create(outlook, receiver, new_client_state())
    later = datetime.now(UTC) + timedelta(hours=20)
    outlook.state.clock = lambda: later
    try:
        renewed = subscriptions.renew(sub.id, later)
    finally:
        outlook.state.clock = lambda: datetime.now(UTC)
    assert renewed.expires_at > sub.expires_at
    subscriptions.delete(sub.id)
    subscriptions.delete(sub.id)  # twice is fine
    with pytest.raises(SubscriptionGone):
        subscriptions.renew(sub.id, datetime.now(UTC))
    outlook.seed({"subject": "after", **timed(at(2))})
    with pytest.raises(queue.Empty):
        receiver.next(timeout=0.5)


def test_lifecycle_events_go_to_the_lifecycle_url(outlook: OutlookWorld, receiver: Receiver) -> None:
    state = new_client_state()
    subscriptions = _subscriptions(outlook)
    sub = _create(outlook, receiver, state)

    outlook.state.send_lifecycle(sub.id, "reauthorizationRequired")
    path, body = receiver.next()
    (item,) = parse_notifications(body)
    assert path == "/webhooks/outlook/lifecycle" and item.lifecycle_event == "reauthorizationRequired"
    assert client_state_matches(item.client_state, state)
    subscriptions.reauthorize(sub.id)
    assert not outlook.state.subscriptions[sub.id].needs_reauthorization

    outlook.state.send_lifecycle(sub.id, "subscriptionRemoved")
    _, body = receiver.next()
    assert parse_notifications(body)[0].lifecycle_event == "subscriptionRemoved"
    with pytest.raises(SubscriptionGone):
        subscriptions.renew(sub.id, datetime.now(UTC))


def test_malformed_notification_items_are_left_out() -> None:
    body = {
        "value": [
            {"subscriptionId": "s", "clientState": "c", "changeType": "updated"},
            {"subscriptionId": "s"},  # no clientState: cannot be verified
            "junk",
            {"subscriptionId": "s", "clientState": "c", "lifecycleEvent": "somethingNew"},
        ]
    }
    parsed = parse_notifications(body)
    assert [(n.change_type, n.lifecycle_event) for n in parsed] == [("updated", None), (None, None)]
    assert parse_notifications({"value": "x"}) == [] and parse_notifications(None) == []
    assert not client_state_matches("a", "b")
