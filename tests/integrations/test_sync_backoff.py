"""Per-connection sync backoff against the Google emulator (issue 9, item 3; reference/scale.md 6.2).

The sync job runs through the real job queue (``InProcessRunner`` with a test clock) and the real
Google client over HTTP; the emulator injects 429 / quota / 404 faults and logs every request, so
"the provider was not called" is counted at the provider, not inferred.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select, update

from alliance.jobs import build_registry
from alliance.mail import SmtpTransport
from alliance.reconcile import SYNC_CONNECTION, request_sync, sync_key
from alliance.settings import Settings
from core.jobs import PENDING, InProcessRunner, QueuedJob
from core.mail import MailMessage, MailPolicy, deliver_due
from core.mirror import ConnectionView, add_connection, ensure_therapist, get_connection, list_occurrences
from core.store import Store
from core.sync.attention import PURPOSE
from core.sync.backoff import BackoffPolicy, backoff_ceiling
from tests.core.test_mail import Inbox, smtp  # noqa: F401  (the SMTP server fixture)
from tests.integrations.alliance_server import settings_for
from tests.integrations.google_world import MADRID, GoogleWorld, at, timed

T0 = datetime(2030, 5, 6, 9, 0, tzinfo=UTC)
THERAPIST = "ana@example.org"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    google: GoogleWorld
    store: Store
    settings: Settings
    clock: Clock
    therapist: int
    connection: int

    def runner(self) -> InProcessRunner:
        registry = build_registry(self.settings, clock=self.clock)
        return InProcessRunner(self.store, registry, clock=self.clock)

    def run(self) -> None:
        """One tick of the worker at the test clock's time."""
        self.runner().run_pending()

    def ping(self) -> None:
        """What the Google webhook does for a verified push ping: request one coalesced sync."""
        request_sync(self.store, build_registry(self.settings, clock=self.clock), self.connection, self.clock())

    def view(self) -> ConnectionView:
        view = get_connection(self.store, self.therapist, self.connection)
        assert view is not None
        return view

    def provider_calls(self) -> int:
        return len(self.google.list_requests())

    def waiting_syncs(self) -> list[datetime]:
        with self.store.session() as session:
            return list(
                session.scalars(
                    select(QueuedJob.next_attempt_at).where(
                        QueuedJob.job == SYNC_CONNECTION,
                        QueuedJob.queueing_lock == sync_key(self.connection),
                        QueuedJob.status == PENDING,
                    )
                )
            )

    def attention_mails(self) -> int:
        with self.store.session() as session:
            return len(list(session.scalars(select(MailMessage.id).where(MailMessage.purpose == PURPOSE))))


def _move_waiting_run(world: World, to: datetime) -> None:
    with world.store.session() as session:
        session.execute(
            update(QueuedJob).where(QueuedJob.queueing_lock == sync_key(world.connection)).values(next_attempt_at=to)
        )


def _world(google: GoogleWorld, store: Store, home: Path, **settings: object) -> World:
    config = settings_for(
        google.emu,
        home,
        None,
        sync_interval_minutes=24 * 60,  # the reconciliation sweep stays out of the way
        sync_backoff_base_seconds=30,
        sync_backoff_cap_seconds=240,
        **settings,
    )
    therapist = ensure_therapist(store, THERAPIST, timezone=MADRID)
    connection = add_connection(store, therapist, "google", "work", google.settings())
    return World(google, store, config, Clock(), therapist, connection)


@pytest.fixture
def world(google: GoogleWorld, sqlite_store: Store, tmp_path: Path) -> World:
    return _world(google, sqlite_store, tmp_path / "home", sync_max_failures=8)


def test_a_throttled_sync_waits_retry_after_and_a_ping_meanwhile_does_not_call_google(world: World) -> None:
    world.google.seed({"summary": "Session", **timed(at(2), tz=MADRID)})
    # Retry-After beyond what one sync may wait in the client: the job gets the error and backs off.
    world.google.state.inject_fault("rateLimitExceeded429", retry_after=120)
    world.ping()
    world.run()

    view = world.view()
    assert view.health == "error" and view.consecutive_failures == 1
    assert view.backoff_until == T0 + timedelta(seconds=120)  # Retry-After honoured exactly
    assert [r["status"] for r in world.google.list_requests()] == [429]
    assert world.waiting_syncs() == [T0 + timedelta(seconds=120)]  # the job asked for itself then

    # Push pings 30 s later do not bring the run forward, and Google hears nothing.
    world.clock.now = T0 + timedelta(seconds=30)
    for _ in range(5):
        world.ping()
    assert world.waiting_syncs() == [T0 + timedelta(seconds=120)]
    world.run()
    assert world.provider_calls() == 1
    # Even a run that comes up early (a request made without the check, another worker's clock)
    # re-queues itself for backoff_until instead of calling Google.
    _move_waiting_run(world, world.clock.now)
    world.run()
    assert world.provider_calls() == 1
    assert world.waiting_syncs() == [T0 + timedelta(seconds=120)]
    assert world.view().consecutive_failures == 1  # skipping is not failing

    # After the backoff the waiting run syncs; success clears the streak and the backoff.
    world.clock.now = T0 + timedelta(seconds=121)
    world.run()
    view = world.view()
    assert (view.health, view.consecutive_failures, view.backoff_until, view.failing_since) == ("ok", 0, None, None)
    assert [o.title for o in list_occurrences(world.store)] == ["Session"]
    assert world.waiting_syncs() == []


def test_without_retry_after_the_backoff_grows_exponentially_up_to_the_cap(world: World) -> None:
    # quotaExceeded: not retried inside the client (more requests prolong it), only by the backoff.
    world.google.state.inject_fault("quotaExceeded", count=-1)
    policy = BackoffPolicy(base=timedelta(seconds=30), cap=timedelta(seconds=240))
    world.ping()
    for failures in range(1, 7):
        started = world.clock.now
        world.run()
        view = world.view()
        assert view.consecutive_failures == failures and view.backoff_until is not None
        waited = view.backoff_until - started
        assert timedelta(0) <= waited <= backoff_ceiling(failures, policy)  # 30, 60, 120, 240, 240, 240 s at most
        assert world.waiting_syncs() == [view.backoff_until]
        assert world.provider_calls() == failures  # one request per sync: no hidden retries
        world.clock.now = view.backoff_until + timedelta(seconds=1)
    assert world.view().failing_since == T0


def test_a_failure_retrying_cannot_fix_is_not_retried_by_backoff(world: World) -> None:
    world.google.state.inject_fault("notFound", status=404)  # the calendar was deleted
    world.ping()
    world.run()
    view = world.view()
    assert view.health == "error" and "not found" in (view.last_error or "")
    assert view.consecutive_failures == 1 and view.backoff_until is None
    assert world.waiting_syncs() == []  # no re-request: the next reconciliation tries again


def test_k_failures_make_the_connection_need_attention_and_send_one_mail_per_streak(
    google: GoogleWorld,
    sqlite_store: Store,
    tmp_path: Path,
    smtp: tuple[Inbox, Controller],  # noqa: F811
) -> None:
    world = _world(google, sqlite_store, tmp_path / "home", sync_max_failures=3)
    google.seed({"summary": "Maria Lopez - intake", **timed(at(2), tz=MADRID)})
    google.state.inject_fault("quotaExceeded", count=-1)
    world.ping()
    healths = []
    for _ in range(5):
        world.run()
        view = world.view()
        healths.append(view.health)
        assert view.backoff_until is not None  # syncs go on at the capped backoff
        world.clock.now = view.backoff_until + timedelta(seconds=1)
    assert healths == ["error", "error", "needs_attention", "needs_attention", "needs_attention"]
    assert world.attention_mails() == 1

    inbox, controller = smtp
    transport = SmtpTransport("127.0.0.1", controller.port, security="none", timeout=5)
    counts = deliver_due(world.store, transport, MailPolicy(sender="Appointments <a@practice.test>"), now=world.clock())
    assert counts.sent == 1
    (message,) = inbox.messages
    assert message["To"] == THERAPIST
    assert message["Subject"] == "A calendar connection needs your attention"
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    text = body.get_content()
    assert '"work"' in text and "5 times" not in text and "3 times in a row" in text
    assert "Maria" not in message.as_string()  # no client, no appointment named

    # Recovery ends the streak; a later streak of K failures is told once more.
    google.state.clear_faults()
    world.run()
    assert world.view().health == "ok"
    google.state.inject_fault("quotaExceeded", count=-1)
    world.ping()
    for _ in range(3):
        world.run()
        world.clock.now = (world.view().backoff_until or world.clock.now) + timedelta(seconds=1)
    assert world.view().health == "needs_attention"
    assert world.attention_mails() == 2
