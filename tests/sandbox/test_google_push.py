"""events.watch / channels.stop: header-only pings received by a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import queue
import time
from typing import Any

import pytest
from googleapiclient.errors import HttpError

from sandbox.google import RunningEmulator
from tests.sandbox.conftest import Receiver, error_reason, timed


def _watch(service: Any, receiver: Receiver, channel_id: str = "chan-1", **extra: Any) -> dict[str, Any]:
    body = {"id": channel_id, "type": "web_hook", "address": receiver.url, "token": "secret-token", **extra}
    return service.events().watch(calendarId="primary", body=body).execute()


def _session(emu: RunningEmulator, day: int) -> dict[str, Any]:
    return emu.state.seed_event(
        "primary", {"summary": "S", **timed(f"2026-11-{day:02d}T10:00", f"2026-11-{day:02d}T11:00")}
    )


def test_sync_then_exists_pings(emulator: RunningEmulator, service: Any, receiver: Receiver) -> None:
    expiration_ms = int(time.time() * 1000) + 3_600_000
    channel = _watch(service, receiver, expiration=str(expiration_ms))
    assert channel["kind"] == "api#channel" and channel["id"] == "chan-1"
    assert channel["resourceId"] and channel["resourceUri"] and channel["token"] == "secret-token"
    assert int(channel["expiration"]) <= expiration_ms

    sync = receiver.next()
    assert sync.path == "/hooks/google" and sync.body == b""
    assert sync.headers["X-Goog-Resource-State"] == "sync"
    assert sync.headers["X-Goog-Message-Number"] == "1"
    assert sync.headers["X-Goog-Channel-ID"] == "chan-1"
    assert sync.headers["X-Goog-Channel-Token"] == "secret-token"
    assert sync.headers["X-Goog-Resource-ID"] == channel["resourceId"]
    assert sync.headers["X-Goog-Resource-URI"] == channel["resourceUri"]
    assert sync.headers["X-Goog-Channel-Expiration"].endswith(" GMT")
    assert sync.headers["Content-Length"] == "0"

    event = _session(emulator, 2)  # a change in the Google Calendar UI...
    service.events().patch(calendarId="primary", eventId=event["id"], body={"summary": "T"}).execute()  # ...and via API
    emulator.state.cancel_event("primary", event["id"])
    pings = receiver.drain(3)
    assert {p.headers["X-Goog-Resource-State"] for p in pings} == {"exists"}
    numbers = [int(p.headers["X-Goog-Message-Number"]) for p in pings]
    assert numbers == sorted(numbers) and numbers[0] > 1 and len(set(numbers)) == 3
    assert all(p.body == b"" for p in pings)

    # channels.stop: no more pings
    service.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    _session(emulator, 3)
    assert emulator.state.push.wait_idle()
    with pytest.raises(queue.Empty):
        receiver.pings.get_nowait()
    with pytest.raises(HttpError) as caught:
        service.channels().stop(body={"id": "chan-1", "resourceId": channel["resourceId"]}).execute()
    assert caught.value.status_code == 404


def test_dropped_and_duplicated_pings(emulator: RunningEmulator, service: Any, receiver: Receiver) -> None:
    _watch(service, receiver)
    assert receiver.next().headers["X-Goog-Resource-State"] == "sync"

    emulator.state.inject_push_faults(drop=1, duplicate=1)
    _session(emulator, 2)  # dropped
    _session(emulator, 3)  # delivered twice
    _session(emulator, 4)  # delivered once
    assert emulator.state.push.wait_idle()
    pings = receiver.drain(3)
    numbers = [p.headers["X-Goog-Message-Number"] for p in pings]
    assert numbers[0] == numbers[1] != numbers[2]
    with pytest.raises(queue.Empty):
        receiver.pings.get_nowait()
    log = emulator.state.push.deliveries()
    assert [e["dropped"] for e in log].count(True) == 1
    assert sum(1 for e in log if e["delivered"]) == 4  # sync + 2 copies + 1


def test_watch_validation_and_failed_deliveries(emulator: RunningEmulator, service: Any, receiver: Receiver) -> None:
    _watch(service, receiver, channel_id="dup")
    with pytest.raises(HttpError) as caught:
        _watch(service, receiver, channel_id="dup")
    assert caught.value.status_code == 400 and error_reason(caught.value) == "channelIdNotUnique"
    with pytest.raises(HttpError) as caught:
        service.events().watch(calendarId="primary", body={"id": "x", "type": "web_hook"}).execute()
    assert caught.value.status_code == 400

    receiver.next()
    receiver.status = 503  # Google retries 500/502/503/504 with backoff
    emulator.state.settings.push_retries = 2
    emulator.state.settings.push_retry_base = 0.01
    _session(emulator, 2)
    assert emulator.state.push.wait_idle()
    assert len(receiver.drain(3)) == 3
    last = emulator.state.push.deliveries()[-1]
    assert last["status"] == 503 and last["attempts"] == 3 and not last["delivered"]


def test_pings_are_per_calendar(emulator: RunningEmulator, service: Any, receiver: Receiver) -> None:
    emulator.state.add_calendar("practice@group.calendar.google.com", summary="Practice")
    other = (
        service.events()
        .watch(
            calendarId="practice@group.calendar.google.com",
            body={"id": "practice", "type": "web_hook", "address": receiver.url},
        )
        .execute()
    )
    sync = receiver.next()
    assert sync.headers["X-Goog-Channel-ID"] == "practice" and "X-Goog-Channel-Token" not in sync.headers
    assert "practice%40group.calendar.google.com" in other["resourceUri"]
    _session(emulator, 2)  # primary: nobody watches it
    emulator.state.seed_event(
        "practice@group.calendar.google.com", {"summary": "Group", **timed("2026-11-05T18:00", "2026-11-05T19:30")}
    )
    ping = receiver.next()
    assert ping.headers["X-Goog-Channel-ID"] == "practice" and ping.headers["X-Goog-Resource-State"] == "exists"
    assert emulator.state.push.wait_idle()
    with pytest.raises(queue.Empty):
        receiver.pings.get_nowait()
