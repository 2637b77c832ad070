"""The Zoom emulator, driven by the real zoomus client (and plain HTTP where zoomus has no call)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests
from zoomus import ZoomClient

from sandbox.zoom import (
    DAILY_LIMIT_MESSAGE,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_WEBHOOK_SECRET,
    Fault,
    RunningZoom,
    Settings,
    ZoomState,
    run_zoom_emulator,
)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 11, 26, 21, 0, tzinfo=UTC))


@pytest.fixture
def zoom(clock: Clock) -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(Settings(token_ttl=60), clock=clock)) as emu:
        yield emu


def client(emu: RunningZoom) -> ZoomClient:
    return ZoomClient(
        DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, DEFAULT_ACCOUNT_ID, base_uri=emu.api_url, oauth_uri=emu.token_url
    )


def test_s2s_token_and_meeting_lifecycle(zoom: RunningZoom) -> None:
    c = client(zoom)
    user = zoom.state.default_user.id
    start = datetime(2026, 12, 1, 17, 0, tzinfo=UTC)
    r = c.meeting.create(
        user_id=user,
        topic="Session",
        type=2,
        start_time=start,
        duration=50,
        timezone="Europe/Madrid",
        settings={"waiting_room": True},
    )
    assert r.status_code == 201
    meeting = r.json()
    assert isinstance(meeting["id"], int)
    assert meeting["start_time"] == "2026-12-01T17:00:00Z"
    assert meeting["join_url"].startswith(f"https://zoom.us/j/{meeting['id']}")
    assert "/s/" in meeting["start_url"] and meeting["settings"]["waiting_room"] is True

    r = c.meeting.update(id=meeting["id"], start_time=start + timedelta(hours=1))
    assert r.status_code == 204 and r.content == b""
    assert c.meeting.get(id=meeting["id"]).json()["start_time"] == "2026-12-01T18:00:00Z"
    listing = c.meeting.list(user_id=user).json()
    assert [m["id"] for m in listing["meetings"]] == [meeting["id"]]

    assert c.meeting.delete(id=meeting["id"]).status_code == 204
    gone = c.meeting.get(id=meeting["id"])
    assert gone.status_code == 404 and gone.json()["code"] == 3001
    assert c.meeting.delete(id=meeting["id"]).json()["code"] == 3001


def test_start_time_with_z_is_utc_and_without_is_local(zoom: RunningZoom) -> None:
    token = requests.post(
        zoom.token_url,
        data={"grant_type": "account_credentials", "account_id": DEFAULT_ACCOUNT_ID},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
        timeout=5,
    ).json()["access_token"]
    headers = {"Authorization": f"Bearer {token}"}
    url = f"{zoom.api_url}/users/me/meetings"
    user_url = f"{zoom.api_url}/users/{zoom.state.default_user.id}/meetings"
    assert requests.post(url, json={}, headers=headers, timeout=5).json()["code"] == 1001  # no "me" for S2S
    z = requests.post(
        user_url, json={"start_time": "2026-07-01T10:00:00Z", "timezone": "Europe/Madrid"}, headers=headers, timeout=5
    ).json()
    local = requests.post(
        user_url, json={"start_time": "2026-07-01T10:00:00", "timezone": "Europe/Madrid"}, headers=headers, timeout=5
    ).json()
    assert z["start_time"] == "2026-07-01T10:00:00Z"
    assert local["start_time"] == "2026-07-01T08:00:00Z"  # CEST is UTC+2
    bad = requests.post(user_url, json={"start_time": "tomorrow"}, headers=headers, timeout=5)
    assert bad.status_code == 400 and bad.json()["code"] == 300


def test_zoomus_formats_an_aware_local_time_as_utc_without_converting(zoom: RunningZoom) -> None:
    # The defect the wrapper exists for: 10:00+01:00 goes out as "10:00:00Z", an hour late.
    c = client(zoom)
    start = datetime(2026, 12, 1, 10, 0, tzinfo=ZoneInfo("Europe/Madrid"))
    created = c.meeting.create(user_id=zoom.state.default_user.id, start_time=start).json()
    assert created["start_time"] == "2026-12-01T10:00:00Z" != "2026-12-01T09:00:00Z"


def test_expired_token_is_401_code_124_and_zoomus_never_refreshes(zoom: RunningZoom, clock: Clock) -> None:
    c = client(zoom)
    user = zoom.state.default_user.id
    assert c.meeting.list(user_id=user).status_code == 200
    clock.now += timedelta(seconds=61)
    r = c.meeting.list(user_id=user)
    assert r.status_code == 401 and r.json() == {"code": 124, "message": "Access token is expired."}
    c.refresh_token()
    assert c.meeting.list(user_id=user).status_code == 200
    assert zoom.state.tokens_issued == 2


def test_token_endpoint_errors(zoom: RunningZoom) -> None:
    def post(**kw: Any) -> requests.Response:
        return requests.post(zoom.token_url, timeout=5, **kw)

    assert (
        post(
            data={"grant_type": "account_credentials", "account_id": DEFAULT_ACCOUNT_ID},
            auth=(DEFAULT_CLIENT_ID, "wrong"),
        ).json()["code"]
        == 4702
    )
    assert post(data={"grant_type": "account_credentials", "account_id": DEFAULT_ACCOUNT_ID}).json()["code"] == 4706
    assert post(data={"grant_type": "password"}, auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET)).json()["code"] == 4705
    # Parameters in the query string are accepted too.
    ok = post(
        params={"grant_type": "account_credentials", "account_id": DEFAULT_ACCOUNT_ID},
        auth=(DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET),
    )
    assert ok.json()["expires_in"] == 60 and ok.json()["token_type"] == "bearer"


def test_user_level_code_flow_rotates_refresh_tokens(zoom: RunningZoom) -> None:
    zoom.state.add_user_app("user-app", "user-secret", ("http://127.0.0.1/cb",))
    r = requests.get(
        zoom.authorize_url,
        params={"response_type": "code", "client_id": "user-app", "redirect_uri": "http://127.0.0.1/cb", "state": "s1"},
        allow_redirects=False,
        timeout=5,
    )
    assert r.status_code == 302 and "state=s1" in r.headers["location"]
    code = r.headers["location"].split("code=")[1].split("&")[0]
    first = requests.post(
        zoom.token_url,
        data={"grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1/cb"},
        auth=("user-app", "user-secret"),
        timeout=5,
    ).json()
    me = requests.post(
        f"{zoom.api_url}/users/me/meetings",
        json={"topic": "x"},
        headers={"Authorization": f"Bearer {first['access_token']}"},
        timeout=5,
    )
    assert me.status_code == 201 and me.json()["host_id"] == zoom.state.default_user.id
    second = requests.post(
        zoom.token_url,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=("user-app", "user-secret"),
        timeout=5,
    ).json()
    assert second["refresh_token"] != first["refresh_token"]
    reused = requests.post(
        zoom.token_url,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
        auth=("user-app", "user-secret"),
        timeout=5,
    )
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"


@pytest.mark.parametrize("headers", [True, False])
def test_daily_limit_per_host_with_and_without_headers(zoom: RunningZoom, clock: Clock, headers: bool) -> None:
    zoom.state.settings.daily_limit = 3
    zoom.state.settings.rate_limit_headers = headers
    c = client(zoom)
    user = zoom.state.default_user.id
    codes = [c.meeting.create(user_id=user, topic="t").status_code for _ in range(4)]
    assert codes == [201, 201, 201, 429]
    r = c.meeting.create(user_id=user, topic="t")
    assert r.json()["message"] == DAILY_LIMIT_MESSAGE.format(limit=3)
    assert ("Retry-After" in r.headers) is headers
    assert ("X-RateLimit-Type" in r.headers) is headers
    clock.now = datetime(2026, 11, 27, 0, 0, 1, tzinfo=UTC)
    c.refresh_token()
    assert c.meeting.create(user_id=user, topic="t").status_code == 201


def test_per_second_limit_and_injected_faults(zoom: RunningZoom) -> None:
    zoom.state.settings.qps_limit = 2
    c = client(zoom)
    user = zoom.state.default_user.id
    statuses = [c.meeting.create(user_id=user).status_code for _ in range(3)]
    assert statuses == [201, 201, 429]
    zoom.state.settings.qps_limit = None
    zoom.state.inject_fault(Fault(status=503, code=503, message="down", method="GET", times=1))
    assert c.meeting.list(user_id=user).status_code == 503
    assert c.meeting.list(user_id=user).status_code == 200


class Receiver:
    """A webhook endpoint that records raw deliveries and answers a scripted status."""

    def __init__(self) -> None:
        self.bodies: list[tuple[dict[str, str], bytes]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["content-length"]))
                receiver.bodies.append(({k.lower(): v for k, v in self.headers.items()}, raw))
                body = json.loads(raw)
                if body["event"] == "endpoint.url_validation":
                    plain = body["payload"]["plainToken"]
                    enc = hmac.new(DEFAULT_WEBHOOK_SECRET.encode(), plain.encode(), hashlib.sha256).hexdigest()
                    out = json.dumps({"plainToken": plain, "encryptedToken": enc}).encode()
                    status = 200
                else:
                    out, status = b"", receiver.statuses.pop(0) if receiver.statuses else 200
                self.send_response(status)
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver(zoom: RunningZoom) -> Iterator[Receiver]:
    r = Receiver()
    zoom.state.settings.webhook_url = r.url
    zoom.state.settings.webhook_retry_delays = (0.01, 0.01, 0.01)
    yield r
    r.server.shutdown()


def test_webhooks_are_signed_over_the_raw_body(zoom: RunningZoom, receiver: Receiver) -> None:
    c = client(zoom)
    meeting = c.meeting.create(user_id=zoom.state.default_user.id, topic="Session").json()
    zoom.sender.meeting_started(meeting["id"])
    zoom.sender.participant(meeting["id"], joined=True, host=False, name="Client Name", email="c@example.org")
    zoom.sender.meeting_ended(meeting["id"])
    events = []
    for headers, raw in receiver.bodies:
        ts = headers["x-zm-request-timestamp"]
        expected = (
            "v0=" + hmac.new(DEFAULT_WEBHOOK_SECRET.encode(), f"v0:{ts}:".encode() + raw, hashlib.sha256).hexdigest()
        )
        assert headers["x-zm-signature"] == expected
        body = json.loads(raw)
        assert body["payload"]["object"]["id"] == str(meeting["id"])  # a string in webhooks
        assert body["payload"]["object"]["uuid"] == meeting["uuid"]
        events.append(body["event"])
    assert events == ["meeting.started", "meeting.participant_joined", "meeting.ended"]
    assert "end_time" in json.loads(receiver.bodies[-1][1])["payload"]["object"]


def test_url_validation_and_retries_and_duplicates(zoom: RunningZoom, receiver: Receiver) -> None:
    assert zoom.sender.validate_endpoint() is True
    zoom.state.settings.webhook_secret = "another"
    assert zoom.sender.validate_endpoint() is False
    zoom.state.settings.webhook_secret = DEFAULT_WEBHOOK_SECRET
    meeting = client(zoom).meeting.create(user_id=zoom.state.default_user.id).json()
    receiver.statuses = [500, 500]
    d = zoom.sender.meeting_started(meeting["id"], duplicates=1)
    assert d.attempts == [500, 500, 200, 200]
    receiver.statuses = [500, 500, 500, 500]
    dropped = zoom.sender.meeting_ended(meeting["id"])
    assert dropped.attempts == [500, 500, 500, 500] and not dropped.delivered
    deleted = zoom.sender.meeting_deleted_by_host(meeting["id"])
    body = json.loads(deleted.body)
    assert body["event"] == "meeting.deleted" and body["payload"]["operation"] == "single"
    assert client(zoom).meeting.get(id=meeting["id"]).json()["code"] == 3001


def test_control_api(zoom: RunningZoom) -> None:
    requests.put(f"{zoom.base_url}/_emulator/settings", json={"daily_limit": 1}, timeout=5)
    c = client(zoom)
    assert c.meeting.create(user_id=zoom.state.default_user.id).status_code == 201
    assert c.meeting.create(user_id=zoom.state.default_user.id).status_code == 429
    requests.post(f"{zoom.base_url}/_emulator/oauth/expire", timeout=5)
    assert c.meeting.list(user_id=zoom.state.default_user.id).json()["code"] == 124
    state = requests.get(f"{zoom.base_url}/_emulator/state", timeout=5).json()
    assert len(state["meetings"]) == 1 and state["tokens_issued"] == 1
    assert base64.b64decode(state["meetings"][0]["uuid"])
