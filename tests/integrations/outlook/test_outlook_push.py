"""Outlook push end to end: Alliance's web app served on loopback, the emulator's subscriptions calling
its webhook for real; the handshake, verified notifications coalesced into one sync, forgeries refused,
lifecycle events, daily renewal and a renewal failure that is surfaced."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from alliance.app import create_app
from alliance.jobs import build_registry
from alliance.outlook_push import RENEW_WHEN_LEFT, SYNC_JOB, live_subscription, maintain_subscriptions
from alliance.push import maintain_channels
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.jobs.models import PENDING, QueuedJob
from core.jobs.runner import InProcessRunner
from core.mirror import add_connection, ensure_therapist, list_connections, list_occurrences
from core.push.pause import current_pauses
from core.store import Store
from core.sync import SourceError
from integrations.outlook.settings import parse_settings
from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.integrations.outlook.world import OutlookWorld, at, timed
from tests.webhooks.serve import loopback, serve_on


@pytest.fixture
def served(sqlite_store: Store, tmp_path: Path) -> Iterator[str]:
    """Alliance's web app on a free loopback port (its base URL is the public URL Graph calls)."""
    sock, base = loopback()
    app = create_app(_settings_for(base, tmp_path, None), store=sqlite_store)
    with serve_on(sock, app, lifespan="off"):
        yield base


def _settings_for(public_url: str, home: Path, outlook: OutlookWorld | None) -> Settings:
    extra: dict[str, Any] = {}
    if outlook is not None:
        extra = {
            "ms_authority": outlook.emu.authority,
            "graph_api_url": outlook.emu.graph_url,
            "ms_ca_bundle": outlook.emu.ca_file,
        }
    return Settings(
        home=home,
        public_url=public_url,
        ms_client_id=DEFAULT_CLIENT_ID,
        ms_client_secret=DEFAULT_CLIENT_SECRET,
        timezone="Europe/Madrid",
        **extra,
    )


@pytest.fixture
def push(outlook: OutlookWorld, sqlite_store: Store, served: str, tmp_path: Path) -> Any:
    # The served app needs only the store and the job names; the runner below uses these settings.
    settings = _settings_for(served, tmp_path, outlook)
    therapist = ensure_therapist(sqlite_store, "ana@example.org")
    outlook.seed({"iCalUId": "first@x", "subject": "First", **timed(at(2))})
    connection_id = add_connection(sqlite_store, therapist, "outlook", "outlook", outlook.settings())
    (connection,) = list_connections(sqlite_store)
    assert sync_one(sqlite_store, settings, connection).ok
    return settings, connection_id


def _connection(store: Store) -> Any:
    (connection,) = list_connections(store)
    return connection


def _pending_syncs(store: Store) -> int:
    with store.session() as session:
        rows = session.scalars(select(QueuedJob).where(QueuedJob.status == PENDING, QueuedJob.job == SYNC_JOB))
        return len(list(rows))


def _wait_for_deliveries(outlook: OutlookWorld, items: int) -> list[Any]:
    """The finished POSTs, once they carried ``items`` notifications in all (a wait, not a time assertion)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        done = [d for d in outlook.state.notifier.deliveries if d.status is not None]
        if sum(len(d.items) for d in done) >= items:
            return done
        time.sleep(0.02)
    raise AssertionError(f"fewer than {items} notifications delivered: {outlook.state.notifier.deliveries}")


def _subscribed(store: Store, settings: Settings) -> None:
    """The connection's first subscription made, and the one sync that it asks for run."""
    registry = build_registry(settings)
    maintain_subscriptions(store, settings, registry)
    assert _pending_syncs(store) == 1
    InProcessRunner(store, registry).run_pending()
    assert _pending_syncs(store) == 0


def test_a_subscription_is_made_through_the_handshake_and_its_secret_stays_encrypted(
    outlook: OutlookWorld, sqlite_store: Store, push: Any, tmp_path: Path
) -> None:
    settings, connection_id = push
    maintain_subscriptions(sqlite_store, settings, build_registry(settings))

    (sub,) = outlook.state.subscriptions.values()
    assert sub.notification_url == f"{settings.public_url}/webhooks/outlook"
    assert sub.lifecycle_url == f"{settings.public_url}/webhooks/outlook/lifecycle"
    stored = live_subscription(sqlite_store, connection_id)
    assert stored is not None and stored.channel_id == sub.id and stored.resource_id == "/me/events"
    assert len(sub.client_state) >= 32
    assert "subscription" not in _connection(sqlite_store).settings  # kept apart from the token cache
    database = Path(str(sqlite_store.engine.url.database)).read_bytes()
    assert sub.client_state.encode() not in database
    # The job runs every minute; with days left it changes nothing and does not call Graph.
    asked = len(outlook.state.requests())
    assert maintain_subscriptions(sqlite_store, settings, build_registry(settings)) == 0
    assert list(outlook.state.subscriptions) == [sub.id] and len(outlook.state.requests()) == asked


def test_a_change_made_before_the_first_subscription_is_mirrored_once_it_is_made(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    # The connection's first sync ran (the fixture); a change before its subscription exists is
    # notified to nobody. The new subscription asks for one sync, which brings it in.
    settings, _ = push
    outlook.seed({"iCalUId": "early@x", "subject": "Early", **timed(at(6))})
    assert "early@x" not in {o.uid for o in list_occurrences(sqlite_store)}

    maintain_subscriptions(sqlite_store, settings, build_registry(settings))
    assert _pending_syncs(sqlite_store) == 1
    InProcessRunner(sqlite_store, build_registry(settings)).run_pending()
    assert "early@x" in {o.uid for o in list_occurrences(sqlite_store)}


def test_notifications_become_one_coalesced_sync(outlook: OutlookWorld, sqlite_store: Store, push: Any) -> None:
    settings, _ = push
    maintain_subscriptions(sqlite_store, settings, build_registry(settings))
    outlook.state.settings.notification_batch_seconds = 0.0  # one POST per change: a real burst
    for n in range(5):
        outlook.seed({"iCalUId": f"new{n}@x", "subject": f"New {n}", **timed(at(3 + n))})

    deliveries = _wait_for_deliveries(outlook, 5)
    assert {d.status for d in deliveries} == {202}
    assert _pending_syncs(sqlite_store) == 1  # five notifications, one queued sync

    InProcessRunner(sqlite_store, build_registry(settings)).run_pending()

    assert {o.uid for o in list_occurrences(sqlite_store)} == {"first@x"} | {f"new{n}@x" for n in range(5)}
    assert _pending_syncs(sqlite_store) == 0


def test_forged_or_stale_notifications_are_refused(outlook: OutlookWorld, sqlite_store: Store, push: Any) -> None:
    settings, connection_id = push
    _subscribed(sqlite_store, settings)
    (sub,) = outlook.state.subscriptions.values()
    url = f"{settings.public_url}/webhooks/outlook"
    item = {"subscriptionId": sub.id, "clientState": "guessed", "changeType": "updated", "resource": "x"}

    wrong_secret = httpx.post(url, json={"value": [item]})
    wrong_subscription = httpx.post(
        url, json={"value": [item | {"subscriptionId": "other", "clientState": sub.client_state}]}
    )
    garbage = httpx.post(url, content=b"not json")
    no_items = httpx.post(url, json={"value": []})

    assert [r.status_code for r in (wrong_secret, wrong_subscription, garbage, no_items)] == [403] * 4
    assert _pending_syncs(sqlite_store) == 0
    # A batch mixing good and forged items: the good one counts, the forged one is discarded.
    mixed = httpx.post(url, json={"value": [item, item | {"clientState": sub.client_state}]})
    assert mixed.status_code == 202 and _pending_syncs(sqlite_store) == 1
    assert connection_id == _connection(sqlite_store).id


def test_a_token_refresh_stored_during_a_sync_keeps_the_subscription(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    # The race: a sync refreshing its token stores the connection's settings while the upkeep
    # subscribes. The subscription lives apart from those settings, so neither write loses the other.
    settings, connection_id = push
    stale = _connection(sqlite_store)  # settings a sync job read before the upkeep ran
    maintain_subscriptions(sqlite_store, settings, build_registry(settings))
    (sub,) = outlook.state.subscriptions.values()
    outlook.state.expire_access_tokens()
    assert sync_one(sqlite_store, settings, stale).ok  # refreshes, and stores its settings
    assert _connection(sqlite_store).settings["token_cache"] != stale.settings["token_cache"]

    outlook.state.settings.notification_batch_seconds = 0.0
    outlook.seed({"iCalUId": "after@x", "subject": "After", **timed(at(5))})
    (delivery,) = _wait_for_deliveries(outlook, 1)
    assert delivery.status == 202 and _pending_syncs(sqlite_store) == 1
    current = live_subscription(sqlite_store, connection_id)
    assert current is not None and current.channel_id == sub.id


def test_the_validation_handshake_echoes_the_decoded_token(push: Any) -> None:
    settings, _ = push
    for path in ("/webhooks/outlook", "/webhooks/outlook/lifecycle"):
        answer = httpx.post(
            f"{settings.public_url}{path}?validationToken=Validation%3A%20Testing%20client%20%26%20more",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        assert answer.text == "Validation: Testing client & more"


def test_lifecycle_events_resync_resubscribe_and_reauthorize(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    settings, _ = push
    _subscribed(sqlite_store, settings)
    runner = InProcessRunner(sqlite_store, build_registry(settings))
    (sub,) = outlook.state.subscriptions.values()

    outlook.state.settings.drop_notifications = 1.0  # this change is never notified...
    outlook.seed({"iCalUId": "lost@x", "subject": "Lost", **timed(at(4))})
    outlook.state.send_lifecycle(sub.id, "missed")  # ...and Graph says so
    _wait_for_deliveries(outlook, 1)
    runner.run_pending()  # the lifecycle job queues a sync
    runner.run_pending()  # which runs
    assert "lost@x" in {o.uid for o in list_occurrences(sqlite_store)}

    outlook.state.send_lifecycle(sub.id, "reauthorizationRequired")
    _wait_for_deliveries(outlook, 2)
    runner.run_pending()
    assert outlook.state.subscriptions[sub.id].needs_reauthorization is False

    outlook.state.send_lifecycle(sub.id, "subscriptionRemoved")
    _wait_for_deliveries(outlook, 3)
    runner.run_pending()
    (again,) = outlook.state.subscriptions.values()
    assert again.id != sub.id
    current = live_subscription(sqlite_store, _connection(sqlite_store).id)
    assert current is not None and current.channel_id == again.id


def test_renewal_happens_a_day_ahead_and_a_failing_one_is_surfaced(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    settings, _ = push
    start = datetime.now(UTC)
    maintain_subscriptions(sqlite_store, settings, build_registry(settings), start)
    (sub,) = outlook.state.subscriptions.values()
    first_expiry = sub.expiration
    InProcessRunner(sqlite_store, build_registry(settings)).run_pending()  # the new subscription's sync

    # A day later the subscription has less than RENEW_WHEN_LEFT: it is renewed, not replaced.
    later = start + timedelta(days=1, minutes=1)
    assert first_expiry - later < RENEW_WHEN_LEFT
    outlook.state.clock = lambda: later
    try:
        maintain_subscriptions(sqlite_store, settings, build_registry(settings), later)
        assert list(outlook.state.subscriptions) == [sub.id] and sub.expiration > first_expiry
        assert _pending_syncs(sqlite_store) == 0  # renewed in place: it was listening all along
        stored = live_subscription(sqlite_store, _connection(sqlite_store).id)
        assert stored is not None and stored.expires_at == sub.expiration

        # Graph refusing the renewal: the run fails loudly, and the connection's upkeep pauses
        # (shown in its health) instead of asking Graph again every minute.
        even_later = later + timedelta(days=1, minutes=1)
        outlook.state.clock = lambda: even_later
        outlook.state.inject("subscriptions", 400, code="InvalidRequest", times=1000)
        with pytest.raises(SourceError, match="could not be made or renewed"):
            maintain_subscriptions(sqlite_store, settings, build_registry(settings), even_later)
        (pause,) = current_pauses(sqlite_store, even_later).values()
        assert pause.failures == 1 and "400" in pause.reason
        asked = len(outlook.state.requests("/subscriptions"))
        for minutes in (1, 2, 3):
            next_run = even_later + timedelta(minutes=minutes)
            assert maintain_subscriptions(sqlite_store, settings, build_registry(settings), next_run) == 0
        assert len(outlook.state.requests("/subscriptions")) == asked
        # After the pause Graph is asked again; accepted, the pause is forgotten.
        outlook.state.faults.clear()
        after = pause.until + timedelta(seconds=1)
        outlook.state.clock = lambda: after
        assert maintain_subscriptions(sqlite_store, settings, build_registry(settings), after) == 1
        assert current_pauses(sqlite_store, after) == {} and list(outlook.state.subscriptions) == [sub.id]
    finally:
        outlook.state.clock = lambda: datetime.now(UTC)
        outlook.state.faults.clear()


def test_subscription_upkeep_is_scheduled_only_with_a_public_url(tmp_path: Path) -> None:
    with_url = build_registry(_settings_for("https://alliance.example.org", tmp_path, None))
    without = build_registry(Settings(home=tmp_path, timezone="Europe/Madrid"))
    # Every minute: a new connection is notified of its changes within a minute of connecting.
    assert ("outlook.subscriptions", timedelta(minutes=1)) in [(p.name, p.every) for p in with_url.periodic]
    assert "outlook.subscriptions" not in [p.name for p in without.periodic]


def test_settings_from_before_subscriptions_moved_are_accepted_and_drop_the_old_record(outlook: OutlookWorld) -> None:
    legacy = outlook.settings() | {"subscription": {"id": "s", "client_state": "x", "expires_at": "2030-01-01"}}
    assert "subscription" not in parse_settings(legacy).as_dict()


def test_the_generic_push_job_leaves_outlook_subscriptions_alone(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    settings, connection_id = push
    maintain_subscriptions(sqlite_store, settings, build_registry(settings))
    (sub,) = outlook.state.subscriptions.values()

    report = maintain_channels(sqlite_store, settings, datetime.now(UTC), build_registry(settings))

    assert report.stopped == [] and report.opened == []
    current = live_subscription(sqlite_store, connection_id)
    assert current is not None and current.channel_id == sub.id and current.stopped_at is None
    assert list(outlook.state.subscriptions) == [sub.id]


def test_one_post_for_two_connections_queues_a_sync_for_each(
    outlook: OutlookWorld, sqlite_store: Store, push: Any
) -> None:
    # Graph batches notifications of several subscriptions into one POST: each item is checked on
    # its own and each connection gets its sync.
    settings, first = push
    other = ensure_therapist(sqlite_store, "ben@example.org")
    second = add_connection(sqlite_store, other, "outlook", "outlook", outlook.settings())
    maintain_subscriptions(sqlite_store, settings, build_registry(settings))
    subs = list(outlook.state.subscriptions.values())
    assert len(subs) == 2

    items = [
        {"subscriptionId": s.id, "clientState": s.client_state, "changeType": "updated", "resource": "x"} for s in subs
    ]
    answer = httpx.post(f"{settings.public_url}/webhooks/outlook", json={"value": items})

    assert answer.status_code == 202
    with sqlite_store.session() as session:
        rows = session.scalars(select(QueuedJob).where(QueuedJob.status == PENDING, QueuedJob.job == SYNC_JOB))
        assert sorted(r.args["connection_id"] for r in rows) == sorted([first, second])
