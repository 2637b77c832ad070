"""Failures at the Google boundary: retries, quota, revoked consent, token refresh and its persistence."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from alliance.settings import Settings
from alliance.syncing import sync_one
from core.mirror import add_connection, ensure_therapist, list_connections, list_occurrences
from core.store import Store
from core.sync import ReauthorizationRequired, SourceError, sync_connection
from integrations.google.client import RetryPolicy
from integrations.google.errors import GoogleUnavailable, QuotaExceeded
from integrations.google.tokens import TokenManager
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.integrations.google_world import EVENTS_PATH, GoogleWorld, at, timed


def _connect(store: Store, settings: dict[str, object] | None = None) -> int:
    therapist = ensure_therapist(store, "ana@example.org")
    return add_connection(store, therapist, "google", "google", dict(settings or {}))


def _health(store: Store, connection_id: int) -> tuple[str, str | None]:
    view = next(c for c in list_connections(store) if c.id == connection_id)
    return view.health, view.last_error


def _statuses(world: GoogleWorld) -> list[int | None]:
    return [r["status"] for r in world.list_requests()]


def test_a_429_with_retry_after_is_waited_out_then_succeeds(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    google.state.inject_fault("rateLimitExceeded429", path=EVENTS_PATH, retry_after=7)
    conn = _connect(sqlite_store)

    report = sync_connection(sqlite_store, conn, google.provider())

    assert report.created == 1
    assert google.waits == [7.0]  # Retry-After honoured (the backoff alone would wait 0.75 s)
    assert _statuses(google) == [429, 200]


@pytest.mark.parametrize("reason", ["rateLimitExceeded", "userRateLimitExceeded"])
def test_403_rate_limits_back_off_exponentially(google: GoogleWorld, sqlite_store: Store, reason: str) -> None:
    google.state.inject_fault(reason, path=EVENTS_PATH, count=3)
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    assert google.waits == [0.75, 1.5, 3.0]  # base 1 s doubling, "equal jitter" at random() = 0.5
    assert _statuses(google) == [403, 403, 403, 200]


@pytest.mark.parametrize("reason", ["backendError", "serviceUnavailable"])
def test_a_server_error_is_retried_then_succeeds(google: GoogleWorld, sqlite_store: Store, reason: str) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    google.state.inject_fault(reason, path=EVENTS_PATH)
    conn = _connect(sqlite_store)
    report = sync_connection(sqlite_store, conn, google.provider())
    assert report.created == 1 and len(google.waits) == 1
    assert _health(sqlite_store, conn) == ("ok", None)


def test_retries_are_bounded_in_attempts_and_total_wait(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    google.state.inject_fault("backendError", path=EVENTS_PATH, count=-1)

    with pytest.raises(GoogleUnavailable, match="kept failing"):
        sync_connection(sqlite_store, conn, google.provider(retry=google.retry(max_attempts=4)))
    assert len(google.waits) == 3 and len(google.list_requests()) == 1 + 4

    google.waits.clear()
    with pytest.raises(GoogleUnavailable):
        sync_connection(sqlite_store, conn, google.provider(retry=google.retry(max_total_delay=5.0)))
    assert google.waits == [0.75, 1.5]  # the next wait (3 s) would pass the 5 s budget
    assert _health(sqlite_store, conn)[0] == "error"
    assert len(list_occurrences(sqlite_store)) == 1  # the mirror is untouched


def test_a_retry_after_beyond_the_budget_is_not_waited(google: GoogleWorld, sqlite_store: Store) -> None:
    google.state.inject_fault("rateLimitExceeded429", path=EVENTS_PATH, retry_after=3600)
    conn = _connect(sqlite_store)
    with pytest.raises(GoogleUnavailable, match="rate-limiting"):
        sync_connection(sqlite_store, conn, google.provider())
    assert google.waits == []


def test_a_timeout_is_retried(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    google.state.inject_fault(None, path=EVENTS_PATH, delay=5.0)  # longer than the client's timeout
    conn = _connect(sqlite_store)
    report = sync_connection(sqlite_store, conn, google.provider(timeout=0.5))
    assert report.created == 1 and len(google.waits) == 1


def test_quota_exceeded_pauses_without_retrying(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    google.state.clear_request_log()
    google.state.inject_fault("quotaExceeded", path=EVENTS_PATH, count=-1)

    with pytest.raises(QuotaExceeded):
        sync_connection(sqlite_store, conn, google.provider())

    assert google.waits == [] and len(google.list_requests()) == 1
    health, error = _health(sqlite_store, conn)
    assert health == "error" and error is not None and "quota exceeded" in error and "paused" in error
    assert len(list_occurrences(sqlite_store)) == 1


def test_revoked_consent_asks_the_therapist_to_reconnect(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider())
    google.state.revoke_consent()

    with pytest.raises(ReauthorizationRequired):
        sync_connection(sqlite_store, conn, google.provider())

    health, error = _health(sqlite_store, conn)
    assert health == "needs_reconnect"
    assert error is not None and "alliance connect google" in error and "invalid_grant" in error
    assert google.waits == []  # nothing retried
    assert [o.status.value for o in list_occurrences(sqlite_store)] == ["confirmed"]


def test_a_stale_access_token_is_refreshed_and_the_new_one_handed_back(
    google: GoogleWorld, sqlite_store: Store
) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    google.state.expire_access_tokens()
    conn = _connect(sqlite_store)

    report = sync_connection(sqlite_store, conn, google.provider())

    assert report.created == 1
    (saved,) = google.saved
    assert saved["token"] != google.tokens["access_token"] and saved["refresh_token"] == google.tokens["refresh_token"]
    assert datetime.fromisoformat(saved["expiry"]) > datetime.now(UTC) + timedelta(minutes=30)
    assert [r["path"] for r in google.state.requests()] == [EVENTS_PATH, "/token", EVENTS_PATH]


def test_a_token_about_to_expire_is_refreshed_before_the_request(google: GoogleWorld, sqlite_store: Store) -> None:
    soon = (datetime.now(UTC) + timedelta(minutes=2)).isoformat()
    conn = _connect(sqlite_store)
    sync_connection(sqlite_store, conn, google.provider(expiry=soon))
    assert [r["path"] for r in google.state.requests()] == ["/token", EVENTS_PATH]
    assert len(google.saved) == 1


def test_one_refresh_at_a_time_per_credential(google: GoogleWorld) -> None:
    def manager() -> TokenManager:
        return TokenManager.for_credential(
            token="stale",
            refresh_token=google.tokens["refresh_token"],
            expiry=datetime.now(UTC) - timedelta(minutes=1),
            token_uri=google.emu.token_uri,
            client_id=DEFAULT_CLIENT_ID,
            client_secret=DEFAULT_CLIENT_SECRET,
            scopes=("https://www.googleapis.com/auth/calendar.events",),
        )

    first, second = manager(), manager()
    assert first is second  # one manager per credential in a process
    start = threading.Barrier(4)

    def refresh() -> None:
        start.wait()
        first.ensure_fresh()

    threads = [threading.Thread(target=refresh) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(google.state.requests("/token")) == 1


def test_a_refreshed_token_is_stored_encrypted_on_the_connection(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "S", **timed(at(1))})
    options = {f"google_{k}": v for k, v in google.context().options["google"].items()}
    settings = Settings(**options)  # type: ignore[arg-type]
    conn = _connect(sqlite_store, google.settings(calendar_id="primary"))
    google.state.expire_access_tokens()

    view = next(c for c in list_connections(sqlite_store) if c.id == conn)
    outcome = sync_one(sqlite_store, settings, view)

    assert outcome.ok and outcome.report is not None and outcome.report.created == 1
    stored = next(c for c in list_connections(sqlite_store) if c.id == conn).settings
    assert stored["token"] != google.tokens["access_token"] and stored["expiry"]
    assert stored["refresh_token"] == google.tokens["refresh_token"]
    with sqlite_store.engine.connect() as raw:
        blob = raw.exec_driver_sql("select credentials from connections").scalar_one()
    assert stored["token"].encode() not in blob and google.tokens["refresh_token"].encode() not in blob


def test_a_bad_request_is_a_source_error_not_retried(google: GoogleWorld, sqlite_store: Store) -> None:
    conn = _connect(sqlite_store)
    with pytest.raises(SourceError, match=r"'nobody@example\.com' was not found"):
        sync_connection(sqlite_store, conn, google.provider(calendar_id="nobody@example.com"))
    assert google.waits == []


def test_the_retry_policy_honours_retry_after_and_caps_the_backoff() -> None:
    policy = RetryPolicy(random=lambda: 1.0, max_delay=8.0)
    assert [policy.delay(n, None) for n in range(5)] == [1.0, 2.0, 4.0, 8.0, 8.0]
    assert policy.delay(0, 30.0) == 30.0 and policy.delay(4, 2.0) == 8.0


def test_each_connection_in_a_process_calls_google_with_its_own_grant(google: GoogleWorld, sqlite_store: Store) -> None:
    """The API resources are shared by the process; the credentials must never be."""
    google.seed({"summary": "S", **timed(at(1))})
    therapist = ensure_therapist(sqlite_store, "ana@example.org")
    good = add_connection(sqlite_store, therapist, "google", "work", {})
    revoked = add_connection(sqlite_store, therapist, "google", "private", {})
    good_provider = google.provider()
    revoked_provider = google.provider(google.settings(refresh_token="1//not-a-grant", token="ya29.not-a-token"))

    assert sync_connection(sqlite_store, good, good_provider).created == 1
    with pytest.raises(ReauthorizationRequired):
        sync_connection(sqlite_store, revoked, revoked_provider)
    google.seed({"summary": "T", **timed(at(2))})
    assert sync_connection(sqlite_store, good, good_provider).created == 1  # still its own grant
    assert _health(sqlite_store, good)[0] != "needs_reconnect"
    assert _health(sqlite_store, revoked)[0] == "needs_reconnect"
