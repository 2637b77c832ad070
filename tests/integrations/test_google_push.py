"""Google push end to end: the emulator delivers real HTTP pings to Alliance's real app under uvicorn.

events.watch is opened by the renewal job (ALLIANCE_PUBLIC_URL set), the emulator POSTs ``sync``
and then ``exists`` pings to ``/webhooks/google``, the webhook verifies them and requests one
coalesced sync, and the worker brings the mirror up to date. Forged pings change nothing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from alliance.app import create_app
from alliance.jobs import build_registry
from alliance.push import maintain_channels
from alliance.settings import Settings
from alliance.syncing import sync_one
from alliance.worker import EmbeddedWorker
from core.jobs import PENDING, InProcessRunner, QueuedJob
from core.mirror import add_connection, ensure_therapist, get_connection, list_occurrences, remove_connection
from core.push import channels_of
from core.store import Store
from core.sync import Status
from tests.integrations.alliance_server import RunningApp, serve_alliance
from tests.integrations.google_world import MADRID, GoogleWorld, at, timed

# A day: the reconciliation sweep cannot be what brings a change in during these tests.
NO_RECONCILE = 24 * 60


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll until ``condition()`` holds (a deadline against hangs, not a speed assertion)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _connect(store: Store, google: GoogleWorld) -> tuple[int, int]:
    therapist = ensure_therapist(store, "ana@example.org", timezone=MADRID)
    return therapist, add_connection(store, therapist, "google", "work", google.settings())


def _connect_and_sync(store: Store, google: GoogleWorld, settings: Settings) -> int:
    """A connected calendar after its first sync (no channel yet): the connection's id."""
    therapist, connection = _connect(store, google)
    view = get_connection(store, therapist, connection)
    assert view is not None and sync_one(store, settings, view).ok
    return connection


def _starts(store: Store) -> dict[str, datetime]:
    return {o.title: o.start for o in list_occurrences(store) if o.status is not Status.CANCELLED}


def _pending_syncs(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(QueuedJob).where(QueuedJob.status == PENDING)) or 0


def _deliveries(google: GoogleWorld, channel_id: str) -> list[dict[str, Any]]:
    return [d for d in google.state.push.deliveries() if d["channel_id"] == channel_id]


@contextmanager
def _serve(
    google: GoogleWorld, store: Store, home: Path, *, with_worker: bool
) -> Iterator[tuple[RunningApp, EmbeddedWorker | None]]:
    holder: dict[str, EmbeddedWorker] = {}

    def build(settings: Settings) -> Any:
        worker = EmbeddedWorker(store, settings, poll_interval=0.5) if with_worker else None
        if worker is not None:
            holder["worker"] = worker
        return create_app(settings, store=store, worker=worker)

    with serve_alliance(google.emu, home, build, sync_interval_minutes=NO_RECONCILE) as running:
        worker = holder.get("worker")
        if worker is not None:
            worker.start()
        try:
            yield running, worker
        finally:
            if worker is not None:
                worker.stop(timeout=30)


@pytest.fixture
def served(
    google: GoogleWorld, sqlite_store: Store, tmp_path: Path
) -> Iterator[tuple[RunningApp, EmbeddedWorker | None]]:
    """The app on a loopback port, without a worker: the test runs the jobs itself."""
    with _serve(google, sqlite_store, tmp_path / "home", with_worker=False) as running:
        yield running


@pytest.fixture
def served_with_worker(
    google: GoogleWorld, sqlite_store: Store, tmp_path: Path
) -> Iterator[tuple[RunningApp, EmbeddedWorker | None]]:
    """The app on a loopback port with its embedded worker running, as ``alliance serve`` runs it."""
    with _serve(google, sqlite_store, tmp_path / "home", with_worker=True) as running:
        yield running


def _refuse_jobs(store: Store) -> None:
    """The job table refuses every new job from now on (what a full disk or a broken database does)."""
    with store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER refuse_jobs BEFORE INSERT ON queued_jobs BEGIN SELECT RAISE(ABORT, 'disk full'); END"
        )


def _accept_jobs(store: Store) -> None:
    with store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER refuse_jobs")


def _ping_headers(google: GoogleWorld, channel_id: str, number: int) -> dict[str, str]:
    """What Google sends for message ``number`` of the channel: a genuine ``exists`` ping."""
    channel = google.state.channels[channel_id]
    return {
        "X-Goog-Channel-ID": channel_id,
        "X-Goog-Channel-Token": channel.token,
        "X-Goog-Resource-ID": channel.resource_id,
        "X-Goog-Resource-State": "exists",
        "X-Goog-Message-Number": str(number),
    }


def _open_channel(store: Store, settings: Settings, google: GoogleWorld, connection: int) -> str:
    """The connection's first channel, opened by the renewal job, and the sync that it asks for run
    (here, unless a worker already did): the test starts with nothing pending."""
    registry = build_registry(settings)
    report = maintain_channels(store, settings, datetime.now(UTC), registry)
    assert report.opened == [connection] and not report.failed and report.synced == [connection]
    (channel,) = channels_of(store, connection)
    _wait(
        lambda: any(
            d["resource_state"] == "sync" and d["status"] == 200 for d in _deliveries(google, channel.channel_id)
        ),
        "the sync message to be acknowledged",
    )
    InProcessRunner(store, registry).run_pending()
    _wait(lambda: _pending_syncs(store) == 0, "the first channel's sync to run")
    return channel.channel_id


def _connected_channel(store: Store, settings: Settings, google: GoogleWorld) -> str:
    """A connected calendar with its push channel open: the channel's id."""
    _, connection = _connect(store, google)
    return _open_channel(store, settings, google, connection)


def test_an_edit_in_google_reaches_the_mirror_through_a_push_ping(
    google: GoogleWorld, sqlite_store: Store, served_with_worker: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served_with_worker
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    connection = _connect_and_sync(sqlite_store, google, running.settings)
    channel_id = _open_channel(sqlite_store, running.settings, google, connection)
    (watch,) = google.state.requests("/calendar/v3/calendars/primary/events/watch", "POST")
    assert watch["status"] == 200
    live = google.state.channels[channel_id]
    assert live.address == f"{running.url}/webhooks/google" and live.token  # a random token was sent

    moved = at(3, hour=15)
    google.state.move_event("primary", event["id"], {"dateTime": moved.isoformat(), "timeZone": MADRID})

    _wait(lambda: _starts(sqlite_store).get("Session") == moved, "the moved session in the mirror")
    pings = [d for d in _deliveries(google, channel_id) if d["resource_state"] == "exists"]
    assert pings and all(d["status"] == 200 for d in pings)
    # The ping's sync was incremental: one events.list with the sync token.
    incremental = [r for r in google.list_requests() if "syncToken" in r["query"]]
    assert incremental


def test_an_edit_made_before_the_first_channel_opened_is_mirrored_once_it_opens(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    # A new connection's first sync runs before its channel opens (the renewal job's next minute):
    # an edit in between is announced by no ping. The first channel asks for a sync, so the edit
    # does not wait for the reconciliation sweep (off in these tests).
    running, _ = served
    event = google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    connection = _connect_and_sync(sqlite_store, google, running.settings)
    before = len(google.state.push.deliveries())
    moved = at(4, hour=16)
    google.state.move_event("primary", event["id"], {"dateTime": moved.isoformat(), "timeZone": MADRID})
    assert google.state.push.wait_idle(30) and len(google.state.push.deliveries()) == before  # nobody listened

    registry = build_registry(running.settings)
    report = maintain_channels(sqlite_store, running.settings, datetime.now(UTC), registry)
    assert report.opened == [connection] and report.synced == [connection]
    (channel,) = channels_of(sqlite_store, connection)
    assert google.state.push.wait_idle(30)
    assert [d["resource_state"] for d in _deliveries(google, channel.channel_id)] == ["sync"]  # no ping for it
    InProcessRunner(sqlite_store, registry).run_pending()
    assert _starts(sqlite_store)["Session"] == moved


def test_a_burst_of_pings_and_duplicates_coalesce_into_one_sync(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    events = [google.seed({"summary": f"S{n}", **timed(at(n + 1), tz=MADRID)}) for n in range(5)]
    connection = _connect_and_sync(sqlite_store, google, running.settings)
    channel_id = _open_channel(sqlite_store, running.settings, google, connection)

    google.state.inject_push_faults(duplicate=3)
    for n, event in enumerate(events):
        google.state.retitle_event("primary", event["id"], f"T{n}")
    assert google.state.push.wait_idle(30)
    pings = [d for d in _deliveries(google, channel_id) if d["resource_state"] == "exists"]
    assert len(pings) == 5 + 3 and all(d["status"] == 200 for d in pings)
    assert _pending_syncs(sqlite_store) == 1  # eight pings, one sync waiting

    google.state.clear_request_log()
    debounced = timedelta(milliseconds=running.settings.push_sync_spacing_ms)  # at most the spacing
    runner = InProcessRunner(
        sqlite_store, build_registry(running.settings), clock=lambda: datetime.now(UTC) + debounced
    )
    runner.run_pending()
    assert sorted(_starts(sqlite_store)) == ["T0", "T1", "T2", "T3", "T4"]
    assert len(google.list_requests()) == 1  # one incremental events.list for the whole burst
    assert _pending_syncs(sqlite_store) == 0


def test_a_redelivered_ping_is_acknowledged_and_syncs_nothing(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    event = google.seed({"summary": "S", **timed(at(1), tz=MADRID)})
    connection = _connect_and_sync(sqlite_store, google, running.settings)
    channel_id = _open_channel(sqlite_store, running.settings, google, connection)
    google.state.retitle_event("primary", event["id"], "T")
    assert google.state.push.wait_idle(30)
    (ping,) = [d for d in _deliveries(google, channel_id) if d["resource_state"] == "exists"]
    debounced = timedelta(milliseconds=running.settings.push_sync_spacing_ms)
    InProcessRunner(
        sqlite_store, build_registry(running.settings), clock=lambda: datetime.now(UTC) + debounced
    ).run_pending()
    assert sorted(_starts(sqlite_store)) == ["T"] and _pending_syncs(sqlite_store) == 0

    # Google delivers that message again (a retry after a timeout on our side): same number.
    headers = _ping_headers(google, channel_id, ping["message_number"])
    with httpx.Client(trust_env=False) as http:
        assert http.post(f"{running.url}/webhooks/google", headers=headers).status_code == 200
    assert _pending_syncs(sqlite_store) == 0  # acknowledged, no events.list for it
    google.state.ping(["primary"])  # a new message (higher number) is acted on
    assert google.state.push.wait_idle(30)
    assert _pending_syncs(sqlite_store) == 1


def test_forged_and_unknown_pings_are_refused_and_sync_nothing(
    google: GoogleWorld,
    sqlite_store: Store,
    served: tuple[RunningApp, EmbeddedWorker | None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    running, _ = served
    channel_id = _connected_channel(sqlite_store, running.settings, google)
    real = google.state.channels[channel_id]
    headers = _ping_headers(google, channel_id, 7)
    url = f"{running.url}/webhooks/google"
    forged_token = "not-the-token-" + "x" * 30
    with caplog.at_level(logging.INFO), httpx.Client(trust_env=False) as http:
        wrong_token = http.post(url, headers={**headers, "X-Goog-Channel-Token": forged_token})
        no_token = http.post(url, headers={k: v for k, v in headers.items() if k != "X-Goog-Channel-Token"})
        unknown = http.post(url, headers={**headers, "X-Goog-Channel-ID": "someone-elses-channel"})
        other_resource = http.post(url, headers={**headers, "X-Goog-Resource-ID": "another-calendar"})
        assert [r.status_code for r in (wrong_token, no_token, unknown, other_resource)] == [403] * 4
        assert _pending_syncs(sqlite_store) == 0
        # A "sync" message (also of a channel not stored yet: it may beat the watch response) is acknowledged.
        assert http.post(url, headers={**headers, "X-Goog-Resource-State": "sync"}).status_code == 200
        assert _pending_syncs(sqlite_store) == 0
        genuine = http.post(url, headers=headers)
        assert genuine.status_code == 200 and not genuine.content
    assert _pending_syncs(sqlite_store) == 1
    assert "refused" in caplog.text
    assert real.token not in caplog.text and forged_token not in caplog.text


def test_renewal_opens_a_new_channel_before_expiry_then_stops_the_old_one(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    _, connection = _connect(sqlite_store, google)
    old = _open_channel(sqlite_store, running.settings, google, connection)
    (first,) = channels_of(sqlite_store, connection)

    # Nothing to do while the channel is far from expiry: no call to Google at all.
    google.state.clear_request_log()
    quiet = maintain_channels(sqlite_store, running.settings, datetime.now(UTC), build_registry(running.settings))
    assert not quiet.opened and not quiet.stopped and google.state.requests("/calendar/v3") == []

    # Half a day before it expires (the emulator caps channels at 7 days; it is the returned expiry
    # that counts), a new channel opens and the old one is stopped at Google and here.
    renewal = maintain_channels(
        sqlite_store, running.settings, first.expires_at - timedelta(hours=12), build_registry(running.settings)
    )
    assert renewal.opened == [connection] and renewal.stopped == [old]
    # The old channel listened until the new one opened: nothing went unannounced, no sync asked.
    assert renewal.synced == [] and _pending_syncs(sqlite_store) == 0
    rows = {c.channel_id: c for c in channels_of(sqlite_store, connection)}
    new = next(cid for cid in rows if cid != old)
    assert rows[old].stopped_at is not None and rows[new].stopped_at is None
    assert set(google.state.channels) == {new}
    stop_calls = google.state.requests("/calendar/v3/channels/stop", "POST")
    assert [c["status"] for c in stop_calls] == [204]

    # The new channel's pings are genuine.
    google.seed({"summary": "After renewal", **timed(at(4), tz=MADRID)})
    assert google.state.push.wait_idle(30)
    assert [d["status"] for d in _deliveries(google, new) if d["resource_state"] == "exists"] == [200]
    assert _pending_syncs(sqlite_store) == 1


def test_a_removed_connection_loses_its_channel_and_its_pings_are_refused(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    therapist, connection = _connect(sqlite_store, google)
    channel_id = _open_channel(sqlite_store, running.settings, google, connection)
    assert remove_connection(sqlite_store, therapist, connection)
    report = maintain_channels(sqlite_store, running.settings, datetime.now(UTC), build_registry(running.settings))
    assert report.stopped == [channel_id] and not report.opened
    google.seed({"summary": "Later", **timed(at(5), tz=MADRID)})
    assert google.state.push.wait_idle(30)
    assert [d["status"] for d in _deliveries(google, channel_id) if d["resource_state"] == "exists"] == [403]
    assert _pending_syncs(sqlite_store) == 0


def test_without_a_public_url_no_channel_is_opened(google: GoogleWorld, sqlite_store: Store, tmp_path: Path) -> None:
    from tests.integrations.alliance_server import settings_for

    _, connection = _connect(sqlite_store, google)
    settings = settings_for(google.emu, tmp_path / "home", None)
    assert maintain_channels(sqlite_store, settings, datetime.now(UTC), build_registry(settings)).opened == []
    assert channels_of(sqlite_store, connection) == []
    assert google.state.requests("/calendar/v3/calendars/primary/events/watch") == []
    assert "push.renew" not in {p.name for p in build_registry(settings).periodic}


def test_a_ping_whose_sync_request_fails_is_acted_on_when_google_retries_it(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    channel_id = _connected_channel(sqlite_store, running.settings, google)
    headers = _ping_headers(google, channel_id, 41)
    url = f"{running.url}/webhooks/google"
    # The job table refuses the sync request (what a full disk or a broken database does).
    _refuse_jobs(sqlite_store)
    with httpx.Client(trust_env=False) as http:
        assert http.post(url, headers=headers).status_code == 500  # Google retries a 5xx
        assert _pending_syncs(sqlite_store) == 0
        _accept_jobs(sqlite_store)
        # Google's retry carries the same message number: it was not taken for a re-delivery.
        assert http.post(url, headers=headers).status_code == 200
    assert _pending_syncs(sqlite_store) == 1


def _post_all(url: str, headers: list[dict[str, str]]) -> list[int]:
    """POST every ping at once (each from its own thread), as Google's deliveries arrive in a storm."""
    barrier = threading.Barrier(len(headers))

    def post(h: dict[str, str]) -> int:
        with httpx.Client(trust_env=False) as http:
            barrier.wait()
            return http.post(url, headers=h).status_code

    with ThreadPoolExecutor(max_workers=len(headers)) as pool:
        return list(pool.map(post, headers))


def test_pings_arriving_together_each_get_their_own_answer(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    # They are acted on in shared transactions (webhooks.batch): a forged ping among genuine ones
    # is still refused, a re-delivery still syncs nothing, and the burst asks for one sync.
    running, _ = served
    channel_id = _connected_channel(sqlite_store, running.settings, google)
    genuine = [_ping_headers(google, channel_id, n) for n in range(100, 124)]
    repeated = genuine[5:8]  # delivered twice, as Google does after a timeout
    forged = [{**h, "X-Goog-Channel-Token": "forged-" + "y" * 30} for h in genuine[:4]]
    unknown = [{**genuine[0], "X-Goog-Channel-ID": f"nobodys-{n}"} for n in range(4)]
    answers = _post_all(f"{running.url}/webhooks/google", genuine + repeated + forged + unknown)
    assert answers == [200] * (len(genuine) + len(repeated)) + [403] * (len(forged) + len(unknown))
    assert _pending_syncs(sqlite_store) == 1
    with sqlite_store.engine.connect() as conn:
        claimed = conn.exec_driver_sql("SELECT last_message_number FROM push_channels").scalar()
    assert claimed == 123  # the highest number of the burst, whatever order the pings came in


def test_pings_whose_shared_transaction_fails_all_get_a_5xx_and_their_retries_count(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    channel_id = _connected_channel(sqlite_store, running.settings, google)
    burst = [_ping_headers(google, channel_id, n) for n in range(200, 212)]
    url = f"{running.url}/webhooks/google"
    _refuse_jobs(sqlite_store)
    assert _post_all(url, burst) == [500] * len(burst)  # Google retries a 5xx
    assert _pending_syncs(sqlite_store) == 0
    _accept_jobs(sqlite_store)
    # No message number of the failed pings stayed claimed: Google's retries are acted on.
    assert _post_all(url, burst) == [200] * len(burst)
    assert _pending_syncs(sqlite_store) == 1


def test_a_ping_that_cannot_be_acted_on_fails_alone_not_with_the_pings_beside_it(
    google: GoogleWorld, sqlite_store: Store, served: tuple[RunningApp, EmbeddedWorker | None]
) -> None:
    running, _ = served
    therapist, work = _connect(sqlite_store, google)
    home = add_connection(sqlite_store, therapist, "google", "home", google.settings())
    registry = build_registry(running.settings)
    report = maintain_channels(sqlite_store, running.settings, datetime.now(UTC), registry)
    assert sorted(report.opened) == sorted(report.synced) == sorted([work, home]) and not report.failed
    InProcessRunner(sqlite_store, registry).run_pending()  # the first channels' syncs
    (broken,), (fine,) = channels_of(sqlite_store, work), channels_of(sqlite_store, home)
    # Claiming a message number of the first channel fails (a corrupt row, say); the second's works.
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql(
            "CREATE TRIGGER poison BEFORE UPDATE ON push_channels "
            f"WHEN OLD.channel_id = '{broken.channel_id}' BEGIN SELECT RAISE(ABORT, 'corrupt'); END"
        )
    url = f"{running.url}/webhooks/google"
    broken_pings = [_ping_headers(google, broken.channel_id, n) for n in range(300, 304)]
    fine_pings = [_ping_headers(google, fine.channel_id, n) for n in range(300, 316)]
    assert _post_all(url, broken_pings + fine_pings) == [500] * len(broken_pings) + [200] * len(fine_pings)
    assert _pending_syncs(sqlite_store) == 1  # the second connection's, requested despite the first
    with sqlite_store.engine.begin() as conn:
        conn.exec_driver_sql("DROP TRIGGER poison")
    assert _post_all(url, broken_pings) == [200] * len(broken_pings)  # Google's retries are acted on
    assert _pending_syncs(sqlite_store) == 2


def test_answered_ahead_of_the_routes_it_keeps_the_headers_body_limit_and_request_log(
    google: GoogleWorld,
    sqlite_store: Store,
    served: tuple[RunningApp, EmbeddedWorker | None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The endpoint answers before the routing table is consulted (webhooks.asgi); what every
    routed request gets still applies: security headers, the body limit, a request log line
    naming the route, 405 with ``Allow`` for another method."""
    running, _ = served
    caplog.set_level(logging.INFO, logger="portal.middleware")
    channel_id = _connected_channel(sqlite_store, running.settings, google)
    url = f"{running.url}/webhooks/google"
    with httpx.Client(trust_env=False) as http:
        ok = http.post(url, headers=_ping_headers(google, channel_id, 3))
        assert ok.status_code == 200 and ok.content == b""
        assert ok.headers["x-content-type-options"] == "nosniff" and ok.headers["cache-control"] == "no-store"
        refused = http.post(url, headers={**_ping_headers(google, channel_id, 4), "X-Goog-Channel-Token": "forged"})
        assert refused.status_code == 403 and refused.content == b""
        huge = http.post(url, headers=_ping_headers(google, channel_id, 5), content=b"x" * (1024 * 1024 + 1))
        assert huge.status_code == 413
        wrong_method = http.get(url)
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
    assert _pending_syncs(sqlite_store) == 1  # the genuine ping's sync, once
    wanted = ("POST /webhooks/google 200", "POST /webhooks/google 403", "GET /webhooks/google 405")
    deadline = time.monotonic() + 10  # the log line is written once the response has been sent
    while not all(line in caplog.text for line in wanted) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert all(line in caplog.text for line in wanted), caplog.text
