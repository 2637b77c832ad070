"""Google's "slow down" on events.watch / channels.stop pauses that connection's channel upkeep
(the renewal job runs every minute; it must not ask again every minute), through the real
google-api-python-client against the emulator's injected 403 quotaExceeded and 429 rateLimitExceeded."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alliance.app import create_app
from alliance.jobs import build_registry
from alliance.push import RENEW_BEFORE, maintain_channels
from core.accounts import create_api_token
from core.mirror import add_connection, ensure_therapist
from core.push import channels_of
from core.push.pause import QUOTA_PAUSE, RATE_PAUSE, paused_connections
from core.store import Store
from tests.integrations.alliance_server import settings_for
from tests.integrations.google_world import MADRID, GoogleWorld

WATCH = "/calendar/v3/calendars/primary/events/watch"
# No ping needs to arrive in these tests: the address only has to be a valid public URL.
PUBLIC_URL = "http://127.0.0.1:9"


def _connect(store: Store, google: GoogleWorld) -> int:
    therapist = ensure_therapist(store, "ana@example.org", timezone=MADRID)
    return add_connection(store, therapist, "google", "work", google.settings())


def _watches(google: GoogleWorld) -> int:
    return len(google.state.requests(WATCH, "POST"))


def test_quota_exceeded_on_watch_pauses_the_connection_and_the_pause_grows(
    google: GoogleWorld, store: Store, tmp_path: Path
) -> None:
    connection = _connect(store, google)
    settings = settings_for(google.emu, tmp_path / "home", PUBLIC_URL)
    google.state.inject_fault("quotaExceeded", path=WATCH, count=2)
    now = datetime.now(UTC)

    report = maintain_channels(store, settings, now, build_registry(settings))
    assert report.opened == [] and list(report.paused) == [connection]
    first = report.paused[connection]
    low, high = QUOTA_PAUSE[0] * 0.8, QUOTA_PAUSE[0] * 1.2
    assert now + low <= first <= now + high
    assert _watches(google) == 1  # quotaExceeded is not retried on the spot

    # The job runs every minute: while paused, Google is not asked again.
    for minutes in (1, 5, 30):
        assert (
            maintain_channels(store, settings, now + timedelta(minutes=minutes), build_registry(settings)).paused == {}
        )
    assert _watches(google) == 1

    # Refused again after the pause: the next pause is about twice as long.
    again = maintain_channels(store, settings, first + timedelta(seconds=1), build_registry(settings)).paused[
        connection
    ]
    assert again - first >= 2 * low
    assert channels_of(store, connection) == []

    # Google accepts: the channel is opened and the pause forgotten.
    report = maintain_channels(store, settings, again + timedelta(seconds=1), build_registry(settings))
    assert report.opened == [connection] and report.paused == {}
    assert paused_connections(store, again + timedelta(seconds=1)) == {}
    assert _watches(google) == 3


def test_a_rate_limit_with_retry_after_pauses_at_least_that_long(
    google: GoogleWorld, sqlite_store: Store, tmp_path: Path
) -> None:
    connection = _connect(sqlite_store, google)
    settings = settings_for(google.emu, tmp_path / "home", PUBLIC_URL)
    # 429 with a Retry-After beyond what one request may wait: reported at once, not slept on.
    google.state.inject_fault("rateLimitExceeded429", path=WATCH, retry_after=3 * 3600)
    now = datetime.now(UTC)
    until = maintain_channels(sqlite_store, settings, now, build_registry(settings)).paused[connection]
    assert until >= now + timedelta(hours=3) > now + RATE_PAUSE[0] * 1.2
    assert maintain_channels(sqlite_store, settings, now + timedelta(hours=1), build_registry(settings)).opened == []
    assert maintain_channels(sqlite_store, settings, until + timedelta(seconds=1), build_registry(settings)).opened == [
        connection
    ]


def test_a_refused_stop_during_renewal_keeps_both_channels_and_pauses(
    google: GoogleWorld, sqlite_store: Store, tmp_path: Path
) -> None:
    connection = _connect(sqlite_store, google)
    settings = settings_for(google.emu, tmp_path / "home", PUBLIC_URL)
    now = datetime.now(UTC)
    assert maintain_channels(sqlite_store, settings, now, build_registry(settings)).opened == [connection]
    (old,) = channels_of(sqlite_store, connection)

    google.state.inject_fault("quotaExceeded", path="/calendar/v3/channels/stop")
    renewal = old.expires_at - RENEW_BEFORE + timedelta(minutes=1)
    report = maintain_channels(sqlite_store, settings, renewal, build_registry(settings))
    # The new channel is open and stored before the old one is stopped: nothing is missed.
    assert report.opened == [connection] and list(report.paused) == [connection]
    live = [c for c in channels_of(sqlite_store, connection) if c.stopped_at is None]
    assert len(live) == 2
    # After the pause the old channel is stopped.
    later = report.paused[connection] + timedelta(seconds=1)
    report = maintain_channels(sqlite_store, settings, later, build_registry(settings))
    # (The emulator caps expiry by its own clock, so the channel opened at the renewal may already
    # look due at this simulated time and be renewed too.)
    assert old.channel_id in report.stopped and report.paused == {}


@pytest.mark.parametrize("reason", ["backendError"])
def test_a_server_error_is_not_a_pause(google: GoogleWorld, sqlite_store: Store, tmp_path: Path, reason: str) -> None:
    connection = _connect(sqlite_store, google)
    settings = settings_for(google.emu, tmp_path / "home", PUBLIC_URL)
    google.state.inject_fault(reason, path=WATCH, count=-1)
    now = datetime.now(UTC)
    report = maintain_channels(sqlite_store, settings, now, build_registry(settings))
    assert report.failed == [connection] and report.paused == {}
    assert paused_connections(sqlite_store, now) == {}


@pytest.mark.anyio
async def test_the_health_api_shows_a_pause_with_until_when_and_why(
    google: GoogleWorld, store: Store, tmp_path: Path
) -> None:
    therapist = ensure_therapist(store, "ana@example.org", timezone=MADRID)
    connection = add_connection(store, therapist, "google", "work", google.settings())
    token = create_api_token(store, therapist, "t").token
    settings = settings_for(google.emu, tmp_path / "home", PUBLIC_URL)
    google.state.inject_fault("quotaExceeded", path=WATCH)
    until = maintain_channels(store, settings, datetime.now(UTC), build_registry(settings)).paused[connection]

    # No worker: the health view is read as the renewal job left it.
    app = create_app(settings, store=store, worker=None)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        headers = {"Authorization": f"Bearer {token}"}
        body = (await client.get(f"/api/v1/connections/{connection}/health", headers=headers)).json()
        pause = body["push_pause"]
        assert datetime.fromisoformat(pause["until"]) == until
        assert "QuotaExceeded" in pause["reason"] and pause["refusals"] == 1
        assert body["push"] is None  # no channel could be opened

        # The pause is over (Google accepts again): the health view no longer shows one.
        maintain_channels(store, settings, until + timedelta(seconds=1), build_registry(settings))
        body = (await client.get(f"/api/v1/connections/{connection}/health", headers=headers)).json()
        assert body["push_pause"] is None and body["push"]["kind"] == "google_channel"
