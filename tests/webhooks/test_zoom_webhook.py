"""POST /webhooks/zoom against deliveries signed exactly as Zoom documents them (the emulator's sender)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from alliance.app import create_app
from alliance.settings import Settings
from core.store import OutboxEvent, Store
from core.video.calls import SESSION_ENDED, apply_call_events
from core.video.models import CallEvent
from sandbox.zoom import DEFAULT_WEBHOOK_SECRET, RunningZoom, ZoomState, run_zoom_emulator, sign
from sandbox.zoom import Settings as ZoomSettings
from tests.conftest import TEST_MASTER_KEY
from tests.core.test_privacy_at_rest import _raw_dump
from tests.video.world import CLIENT_NAME, VideoWorld, soon
from tests.webhooks.serve import serve

CLIENT_EMAIL = "annabel.quigley@example.org"


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator(ZoomState(ZoomSettings(webhook_retry_delays=(0.01, 0.01, 0.01)))) as emu:
        yield emu


def _settings(tmp_path: Path, secret: str | None = DEFAULT_WEBHOOK_SECRET) -> Settings:
    return Settings(home=tmp_path / "home", master_key=TEST_MASTER_KEY, timezone="UTC", zoom_webhook_secret=secret)  # type: ignore[arg-type]


@pytest.fixture
def endpoint(store: Store, zoom: RunningZoom, tmp_path: Path) -> Iterator[str]:
    with serve(create_app(_settings(tmp_path), store=store)) as base:
        url = base + "/webhooks/zoom"
        zoom.state.settings.webhook_url = url
        yield url


def _rows(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(CallEvent)) or 0


def _session_with_meeting(store: Store, zoom: RunningZoom, tmp_path: Path) -> tuple[VideoWorld, int, Any]:
    """A synced online session soon, assigned to a client, with its Zoom meeting: (world, session id, meeting)."""
    world = VideoWorld(store, zoom, tmp_path)
    world.connect()
    start = soon()
    world.put("evt-1", start)
    world.sync()
    sid = world.assign("evt-1", start)
    [meeting] = world.meetings()
    return world, sid, meeting


def test_url_validation_is_answered_with_the_hmac_of_the_plain_token(zoom: RunningZoom, endpoint: str) -> None:
    assert zoom.sender.validate_endpoint() is True
    zoom.state.settings.webhook_secret = "not-ours"
    assert zoom.sender.validate_endpoint() is False  # a challenge signed with another secret: 401


def test_a_call_is_recorded_with_roles_and_times_and_the_end_emits_session_ended(
    store: Store, zoom: RunningZoom, endpoint: str, tmp_path: Path
) -> None:
    world, sid, meeting = _session_with_meeting(store, zoom, tmp_path)
    host = zoom.state.default_user.email
    deliveries = [
        zoom.sender.meeting_started(meeting.id),
        zoom.sender.participant(meeting.id, joined=True, host=True, name="Dr Host", email=host),
        zoom.sender.participant(meeting.id, joined=True, host=False, name=CLIENT_NAME, email=CLIENT_EMAIL),
        zoom.sender.participant(meeting.id, joined=False, host=False, name=CLIENT_NAME, email=CLIENT_EMAIL),
        zoom.sender.meeting_ended(meeting.id),
    ]
    assert [d.attempts for d in deliveries] == [[200]] * 5
    assert world.video(sid).call_ended_at is None  # type: ignore[union-attr]  # the worker applies them
    assert apply_call_events(store) == {"started": 1, "joined": 2, "left": 1, "ended": 1}
    video = world.video(sid)
    assert video is not None
    assert video.call_started_at is not None and video.call_ended_at is not None
    assert video.host_joined_at is not None and video.client_joined_at is not None
    assert video.client_left_at is not None and video.host_left_at is None
    with store.session() as session:
        ended = session.scalars(select(OutboxEvent).where(OutboxEvent.kind == SESSION_ENDED)).all()
    assert [e.payload["session_id"] for e in ended] == [sid]
    assert ended[0].payload["ended_at"] == video.call_ended_at.isoformat()
    dump = _raw_dump(store)
    for secret in (CLIENT_NAME, CLIENT_EMAIL, "Dr Host", host):
        assert secret.encode() not in dump
    assert apply_call_events(store) == {}  # applied once


def test_duplicates_and_retries_are_stored_once(store: Store, zoom: RunningZoom, endpoint: str, tmp_path: Path) -> None:
    _, _, meeting = _session_with_meeting(store, zoom, tmp_path)
    d = zoom.sender.meeting_ended(meeting.id, duplicates=3)
    assert d.attempts == [200, 200, 200, 200]
    assert _rows(store) == 1
    assert apply_call_events(store) == {"ended": 1}
    with store.session() as session:
        assert session.scalar(select(func.count()).where(OutboxEvent.kind == SESSION_ENDED)) == 1


def _post(url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(url, content=body, headers={"content-type": "application/json", **headers}, timeout=5)


def _event(meeting_id: str = "81234567890") -> bytes:
    obj = {
        "id": meeting_id,
        "uuid": "abc/def==",
        "host_id": "h",
        "topic": "t",
        "type": 2,
        "start_time": "2026-12-01T17:00:00Z",
        "end_time": "2026-12-01T17:50:00Z",
        "duration": 50,
    }
    return json.dumps(
        {"event": "meeting.ended", "event_ts": int(time.time() * 1000), "payload": {"account_id": "a", "object": obj}},
        separators=(",", ":"),
    ).encode()


def _signed(body: bytes, *, secret: str = DEFAULT_WEBHOOK_SECRET, ts: int | None = None) -> dict[str, str]:
    stamp = str(ts if ts is not None else int(time.time()))
    return {"x-zm-request-timestamp": stamp, "x-zm-signature": sign(secret, stamp, body)}


def test_forged_unsigned_stale_and_replayed_deliveries_are_refused(store: Store, endpoint: str) -> None:
    body = _event()
    assert _post(endpoint, body, {}).status_code == 401
    assert _post(endpoint, body, _signed(body, secret="guess")).status_code == 401
    tampered = body.replace(b"17:50", b"18:50")
    assert _post(endpoint, tampered, _signed(body)).status_code == 401
    assert _post(endpoint, body, _signed(body, ts=int(time.time()) - 310)).status_code == 401  # stale / replayed
    assert _post(endpoint, body, _signed(body, ts=int(time.time()) + 310)).status_code == 401
    assert _post(endpoint, body, {**_signed(body), "x-zm-request-timestamp": "yesterday"}).status_code == 401
    assert _rows(store) == 0
    # A replay inside the window is acknowledged but changes nothing.
    assert _post(endpoint, body, _signed(body)).status_code == 200
    assert _post(endpoint, body, _signed(body)).status_code == 200
    assert _rows(store) == 1


def test_malformed_json_is_400_and_unknown_events_and_meetings_are_acknowledged(store: Store, endpoint: str) -> None:
    for bad in (b"{not json", b"[1, 2]", json.dumps({"event": "meeting.ended", "payload": {}}).encode()):
        assert _post(endpoint, bad, _signed(bad)).status_code == 400
    other = json.dumps({"event": "recording.completed", "event_ts": 1, "payload": {}}).encode()
    assert _post(endpoint, other, _signed(other)).status_code == 200
    assert _rows(store) == 0
    unknown = _event("99999999999")
    assert _post(endpoint, unknown, _signed(unknown)).status_code == 200
    assert apply_call_events(store) == {"unknown_meeting": 1}


def test_a_meeting_deleted_in_zoom_marks_the_link_missing(
    store: Store, zoom: RunningZoom, endpoint: str, tmp_path: Path
) -> None:
    world, sid, meeting = _session_with_meeting(store, zoom, tmp_path)
    assert zoom.sender.meeting_deleted_by_host(meeting.id).attempts == [200]
    assert apply_call_events(store) == {"deleted_outside": 1}
    video = world.video(sid)
    assert video is not None and video.link_status == "missing" and video.join_url is None
    # Its link leaves the calendar event (write-back) and the therapist is told.
    assert world.outbox_kinds()[-2:] == ["video.link_changed", "video.link_missing"]


def test_without_a_secret_the_endpoint_refuses_everything(store: Store, tmp_path: Path) -> None:
    with serve(create_app(_settings(tmp_path, secret=None), store=store)) as base:
        body = _event()
        assert _post(base + "/webhooks/zoom", body, _signed(body)).status_code == 503
    assert _rows(store) == 0


def test_answered_ahead_of_the_routes_it_keeps_the_body_limit_headers_and_request_log(
    store: Store, endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="portal.middleware")
    body = _event()
    ok = _post(endpoint, body, _signed(body))
    assert ok.status_code == 200 and ok.content == b""
    assert ok.headers["x-content-type-options"] == "nosniff" and ok.headers["cache-control"] == "no-store"
    huge = b'{"event":"meeting.ended","pad":"' + b"x" * (1024 * 1024) + b'"}'
    assert _post(endpoint, huge, _signed(huge)).status_code == 413
    wrong_method = httpx.get(endpoint, timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert _rows(store) == 1
    # The request log names the route, as for routed requests (not "(unmatched)"). The line is written once the
    # response has been sent, so the server thread may write it just after the client has its answer: wait for it.
    wanted = ("POST /webhooks/zoom 200", "GET /webhooks/zoom 405")
    deadline = time.monotonic() + 10
    while not all(line in caplog.text for line in wanted) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(line in caplog.text for line in wanted), caplog.text


def test_events_are_applied_in_arrival_order_across_chunks_and_each_row_keeps_its_outcome(
    store: Store, zoom: RunningZoom, endpoint: str, tmp_path: Path
) -> None:
    world, sid, meeting = _session_with_meeting(store, zoom, tmp_path)
    zoom.sender.meeting_started(meeting.id)
    unknown = _event("99999999999")
    assert _post(endpoint, unknown, _signed(unknown)).status_code == 200
    zoom.sender.participant(meeting.id, joined=True, host=False, name=CLIENT_NAME, email=CLIENT_EMAIL)
    zoom.sender.meeting_ended(meeting.id)
    # One event per transaction: the start is applied before the end, so the end's payload has it.
    assert apply_call_events(store, chunk=1) == {"started": 1, "unknown_meeting": 1, "joined": 1, "ended": 1}
    video = world.video(sid)
    assert video is not None and video.call_started_at is not None and video.client_joined_at is not None
    with store.session() as session:
        [ended] = session.scalars(select(OutboxEvent).where(OutboxEvent.kind == SESSION_ENDED)).all()
        rows = session.scalars(select(CallEvent).order_by(CallEvent.id)).all()
    assert ended.payload["started_at"] == video.call_started_at.isoformat()
    assert [r.outcome for r in rows] == ["started", "unknown_meeting", "joined", "ended"]
    assert all(r.processed_at is not None for r in rows)
    assert apply_call_events(store, chunk=1) == {}
