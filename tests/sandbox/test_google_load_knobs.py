"""The emulator's load-test knobs: pings with no change, a per-request latency, concurrent push senders."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from sandbox.google import GoogleState, RunningEmulator, run_google_emulator
from tests.sandbox.conftest import MADRID, Receiver, make_service, timed


def _watch(service: Any, calendar_id: str, url: str, channel_id: str) -> dict[str, Any]:
    body = {"id": channel_id, "type": "web_hook", "address": url, "token": "tok"}
    return service.events().watch(calendarId=calendar_id, body=body).execute()


def test_ping_sends_exists_without_a_change(emulator: RunningEmulator, service: Any, receiver: Receiver) -> None:
    emulator.state.add_calendar("other", time_zone=MADRID)
    _watch(service, "primary", receiver.url, "chan-primary")
    _watch(service, "other", receiver.url, "chan-other")
    assert {p.headers["X-Goog-Resource-State"] for p in receiver.drain(2)} == {"sync"}
    before = service.events().list(calendarId="primary").execute()

    answer = httpx.post(
        f"{emulator.base_url}/_emulator/push/ping", json={"calendarIds": ["primary", "other", "primary"]}
    )
    assert answer.status_code == 200 and answer.json() == {"sent": 3}
    pings = receiver.drain(3)
    assert all(p.headers["X-Goog-Resource-State"] == "exists" for p in pings)
    assert sorted(p.headers["X-Goog-Channel-ID"] for p in pings) == ["chan-other", "chan-primary", "chan-primary"]
    # nothing changed: an incremental list from before the pings is empty
    after = service.events().list(calendarId="primary", syncToken=before["nextSyncToken"]).execute()
    assert after["items"] == []


def test_ping_refuses_unknown_calendars_and_bad_bodies(emulator: RunningEmulator) -> None:
    url = f"{emulator.base_url}/_emulator/push/ping"
    assert httpx.post(url, json={"calendarIds": ["nope"]}).status_code == 404
    assert httpx.post(url, json={"calendarIds": "primary"}).status_code == 400
    assert httpx.post(url, json={}).status_code == 400


def test_latency_slows_api_requests_but_not_control(emulator: RunningEmulator) -> None:
    emulator.state.seed_event("primary", {"summary": "S", **timed("2026-11-02T10:00", "2026-11-02T11:00")})
    httpx.put(f"{emulator.base_url}/_emulator/settings", json={"latency": 30}).raise_for_status()
    slow = make_service(emulator, timeout=1)
    with pytest.raises((TimeoutError, socket.timeout)):  # the provider answers later than the client waits
        slow.events().list(calendarId="primary").execute(num_retries=0)
    # the control API is never delayed
    assert httpx.get(f"{emulator.base_url}/_emulator/state", timeout=5).status_code == 200
    httpx.put(f"{emulator.base_url}/_emulator/settings", json={"latency": 0}).raise_for_status()
    assert len(slow.events().list(calendarId="primary").execute()["items"]) == 1


@pytest.fixture
def barrier_receiver() -> Iterator[tuple[str, threading.Barrier, list[bool]]]:
    """A push receiver whose handlers each wait until three pings are in flight at once."""
    barrier = threading.Barrier(3, timeout=10)
    outcomes: list[bool] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            try:
                barrier.wait()
                outcomes.append(True)
            except threading.BrokenBarrierError:
                outcomes.append(False)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks", barrier, outcomes
    finally:
        barrier.abort()
        server.shutdown()
        server.server_close()


def test_push_senders_deliver_concurrently(barrier_receiver: tuple[str, threading.Barrier, list[bool]]) -> None:
    url, _barrier, outcomes = barrier_receiver
    state = GoogleState(time_zone=MADRID, seed=3)
    state.settings.push_senders = 3
    with run_google_emulator(state) as emu:
        service = make_service(emu)
        for n in range(3):  # three "sync" messages: delivered only if three senders hold them at once
            emu.state.add_calendar(f"cal{n}", time_zone=MADRID)
            _watch(service, f"cal{n}", url, f"chan-{n}")
        assert emu.state.push.wait_idle(20)
        assert outcomes == [True, True, True]
        assert all(d["delivered"] for d in emu.state.push.deliveries())
