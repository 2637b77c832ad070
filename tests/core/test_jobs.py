"""The job runner: outbox deliveries, retries and parking, deferred and periodic jobs (both databases)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from core.jobs import (
    DONE,
    PARKED,
    PENDING,
    DuplicateJobName,
    Event,
    InProcessRunner,
    JobRegistry,
    JobRunner,
    OutboxDelivery,
    PeriodicJobState,
    QueuedJob,
    RetryPolicy,
    UnknownJob,
    _lifecycle,
    deliver_one,
    list_parked,
    retry_parked,
)
from core.jobs.outbox import relay
from core.jobs.periodic import _finish, claim_periodic, ensure_periodic
from core.store import OutboxEvent, Store, Therapist
from core.store.db import make_engine
from core.sync import SourceError

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


class Clock:
    """An injected clock the tests move by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now


def policy(**overrides: object) -> RetryPolicy:
    values: dict[str, object] = {"max_attempts": 4, "base": timedelta(seconds=10), "random": lambda: 0.5}
    values.update(overrides)
    return RetryPolicy(**values)  # type: ignore[arg-type]


def add_event(store: Store, kind: str = "occurrence.created", occurrence_id: int = 1) -> str:
    event_id = str(uuid.uuid4())
    with store.session() as session:
        session.add(
            OutboxEvent(
                event_id=event_id,
                kind=kind,
                therapist_id=1,
                connection_id=1,
                occurrence_id=occurrence_id,
                payload={"start": "2026-11-03T09:00:00+00:00"},
                created_at=T0,
            )
        )
    return event_id


def deliveries(store: Store) -> dict[tuple[str, str], OutboxDelivery]:
    with store.session() as session:
        return {(d.event_id, d.handler): d for d in session.scalars(select(OutboxDelivery))}


def processed_at(store: Store, event_id: str) -> datetime | None:
    with store.session() as session:
        return session.scalar(select(OutboxEvent.processed_at).where(OutboxEvent.event_id == event_id))


class HandlerFailed(Exception):
    pass


def recorder(calls: list[str], *, fail: Callable[[Event], bool] = lambda e: False) -> Callable[[Store, Event], None]:
    def handle(store: Store, event: Event) -> None:
        calls.append(event.event_id)
        if fail(event):
            raise HandlerFailed("boom")

    return handle


def runner_for(store: Store, registry: JobRegistry, clock: Clock, **kw: object) -> InProcessRunner:
    return InProcessRunner(store, registry, policy=policy(**kw), clock=clock)


# -- registry ---------------------------------------------------------------------------------


def test_names_are_unique_and_signatures_checked_at_registration() -> None:
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", lambda store, event: None)
    with pytest.raises(DuplicateJobName):
        registry.add_handler("links", "occurrence.cancelled", lambda store, event: None)
    registry.add_job("sync.connection", lambda store, connection_id: None)
    with pytest.raises(DuplicateJobName):
        registry.add_periodic("sync.connection", timedelta(minutes=1), lambda store: None)
    with pytest.raises(TypeError, match=r"fn\(store, event\)"):
        registry.add_handler("bad", "occurrence.created", lambda event: None)  # type: ignore[arg-type,misc]
    with pytest.raises(TypeError, match="job 'nostore'"):
        registry.add_job("nostore", lambda: None)
    with pytest.raises(UnknownJob):
        registry.job_named("nope")


def test_the_in_process_runner_is_a_job_runner(store: Store) -> None:
    assert isinstance(InProcessRunner(store, JobRegistry()), JobRunner)


# -- outbox deliveries ------------------------------------------------------------------------


def test_a_successful_handler_runs_once_and_the_event_is_processed(store: Store) -> None:
    calls: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls))
    clock = Clock()
    runner = runner_for(store, registry, clock)
    event_id = add_event(store)
    other_kind = add_event(store, "occurrence.cancelled")

    assert runner.run_pending() == 1
    assert calls == [event_id]
    d = deliveries(store)[(event_id, "links")]
    assert (d.status, d.attempts, d.last_error) == (DONE, 1, None)
    assert processed_at(store, event_id) == T0
    # An event no handler subscribes to is processed at once, without deliveries.
    assert processed_at(store, other_kind) == T0 and (other_kind, "links") not in deliveries(store)

    clock.advance(hours=2)
    assert runner.run_pending() == 0
    assert calls == [event_id]


def test_a_replayed_event_is_not_handled_again(store: Store) -> None:
    calls: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls))
    runner = runner_for(store, registry, Clock())
    event_id = add_event(store)
    runner.run_pending()
    # Replay: the event looks unprocessed again (a restored backup, a relay run twice).
    with store.session() as session:
        session.execute(update(OutboxEvent).values(processed_at=None))
    runner.run_pending()
    runner.run_pending(T0 + timedelta(days=1))
    assert calls == [event_id]


def test_a_delivery_is_claimed_by_one_worker_only(store: Store) -> None:
    calls: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls))
    runner = runner_for(store, registry, Clock())
    add_event(store)
    relay(store, registry, T0)
    (delivery,) = deliveries(store).values()
    second = Store(make_engine(store.engine.url.render_as_string(hide_password=False)))
    try:
        assert deliver_one(store, registry, delivery.id, T0, runner.policy) == DONE
        assert deliver_one(second, registry, delivery.id, T0, runner.policy) is None
    finally:
        second.close()
    assert len(calls) == 1


def test_a_handler_writing_through_the_event_session_commits_with_its_done_mark(store: Store) -> None:
    attempts: list[int] = []

    def register_therapist(store: Store, event: Event) -> None:
        attempts.append(event.attempt)
        event.session.add(Therapist(email=f"{event.event_id}@example.org"))
        event.session.flush()
        if event.attempt == 1:
            raise HandlerFailed("fails after writing")

    registry = JobRegistry()
    registry.add_handler("register", "occurrence.created", register_therapist)
    clock = Clock()
    runner = runner_for(store, registry, clock)
    add_event(store)
    runner.run_pending()
    with store.session() as session:
        assert session.scalars(select(Therapist)).all() == []  # the failed attempt's write rolled back
    clock.advance(minutes=5)
    runner.run_pending()
    runner.run_pending(clock.advance(hours=5))
    assert attempts == [1, 2]
    with store.session() as session:
        assert len(session.scalars(select(Therapist)).all()) == 1


def test_a_worker_that_died_mid_handler_loses_its_claim_and_the_last_such_attempt_parks(store: Store) -> None:
    calls: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls))
    clock = Clock()
    runner = runner_for(store, registry, clock, max_attempts=2)
    add_event(store)
    relay(store, registry, T0)
    (delivery,) = deliveries(store).values()
    table = OutboxDelivery.__table__
    for _ in range(2):  # two workers claim it and die before reporting back
        with store.session() as session:
            assert _lifecycle.claim(session, table, delivery.id, clock(), runner.policy) is not None  # type: ignore[arg-type]
        assert runner.run_pending() == 0  # still claimed: nobody else runs it
        clock.advance(minutes=11)  # the claim runs out
    assert runner.run_pending() == 1
    assert calls == []
    parked = deliveries(store)[(delivery.event_id, "links")]
    assert parked.status == PARKED and parked.last_error == _lifecycle.INTERRUPTED


def test_a_failing_handler_backs_off_more_each_time_then_is_parked_and_can_be_retried(store: Store) -> None:
    calls: list[str] = []
    broken = {"yes": True}
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls, fail=lambda e: broken["yes"]))
    clock = Clock()
    runner = runner_for(store, registry, clock, max_attempts=4)
    event_id = add_event(store)

    waits: list[timedelta] = []
    for attempt in range(1, 5):
        assert runner.run_pending() == 1
        d = deliveries(store)[(event_id, "links")]
        assert d.attempts == attempt
        if attempt < 4:
            assert d.status == PENDING
            wait = d.next_attempt_at - clock()
            waits.append(wait)
            # Not before it is due...
            clock.advance(seconds=wait.total_seconds() - 1)
            assert runner.run_pending() == 0
            clock.advance(seconds=1)
    assert waits == sorted(waits) and len(set(waits)) == 3  # growing: 7.5 s, 15 s, 30 s with this jitter
    assert waits[0] == timedelta(seconds=7.5)
    d = deliveries(store)[(event_id, "links")]
    assert d.status == PARKED
    # A foreign exception's message may quote content: only its type is kept.
    assert d.last_error == "HandlerFailed"
    assert len(calls) == 4
    assert runner.run_pending(clock.advance(days=30)) == 0  # parked stays parked
    assert processed_at(store, event_id) is None

    (item,) = list_parked(store)
    assert (item.id, item.type, item.name, item.event_kind, item.attempts) == (
        f"delivery:{d.id}",
        "delivery",
        "links",
        "occurrence.created",
        4,
    )
    broken["yes"] = False
    assert retry_parked(store, [item.id], clock()) == 1
    assert runner.run_pending() == 1
    assert deliveries(store)[(event_id, "links")].status == DONE
    assert processed_at(store, event_id) is not None
    assert list_parked(store) == []


def test_own_errors_keep_their_message_in_last_error(store: Store) -> None:
    registry = JobRegistry()

    def unreachable(store: Store, event: Event) -> None:
        raise SourceError("cal: https://calendar.example.org answered 503 for user jane@example.org")

    registry.add_handler("links", "occurrence.created", unreachable)
    runner = runner_for(store, registry, Clock())
    add_event(store)
    runner.run_pending()
    (d,) = deliveries(store).values()
    assert d.last_error is not None and d.last_error.startswith("SourceError: cal: https://calendar.example.org")
    assert "jane@example.org" not in d.last_error


def test_one_failing_handler_blocks_neither_its_sibling_nor_other_events(store: Store) -> None:
    good: list[str] = []
    bad: list[str] = []
    registry = JobRegistry()
    registry.add_handler("bad", "*", recorder(bad, fail=lambda e: True))
    registry.add_handler("good", "occurrence.created", recorder(good))
    clock = Clock()
    runner = runner_for(store, registry, clock, max_attempts=2)
    first, second = add_event(store), add_event(store, occurrence_id=2)
    runner.run_pending()
    third = add_event(store, occurrence_id=3)
    runner.run_pending(clock.advance(hours=1))
    runner.run_pending(clock.advance(hours=1))
    assert sorted(good) == sorted([first, second, third])
    assert sorted(bad) == sorted([first, first, second, second, third, third])
    state = deliveries(store)
    assert {k[1]: v.status for k, v in state.items() if k[0] == first} == {"bad": PARKED, "good": DONE}
    assert all(processed_at(store, e) is None for e in (first, second, third))
    assert [i.name for i in list_parked(store)] == ["bad"] * 3
    assert retry_parked(store, None, clock()) == 3


def test_unknown_ids_are_refused_by_retry(store: Store) -> None:
    with pytest.raises(ValueError, match="delivery:N or job:N"):
        retry_parked(store, ["7"], T0)
    assert retry_parked(store, ["delivery:999"], T0) == 0


# -- deferred jobs ----------------------------------------------------------------------------


def test_deferred_jobs_run_when_due_coalesce_on_their_lock_and_park_after_the_last_try(store: Store) -> None:
    ran: list[int] = []
    registry = JobRegistry()

    def sync_connection(store: Store, connection_id: int) -> None:
        ran.append(connection_id)
        if connection_id == 13:
            raise HandlerFailed("unlucky")

    registry.add_job("sync.connection", sync_connection)
    clock = Clock()
    runner = runner_for(store, registry, clock, max_attempts=2)
    assert runner.defer("sync.connection", connection_id=7, queueing_lock="sync:7")
    assert not runner.defer("sync.connection", connection_id=7, queueing_lock="sync:7")  # coalesced
    assert runner.defer("sync.connection", run_at=T0 + timedelta(hours=1), connection_id=8)
    assert runner.defer("sync.connection", connection_id=13)
    with pytest.raises(UnknownJob):
        runner.defer("nope")

    assert runner.run_pending() == 2
    assert ran == [7, 13]
    assert runner.defer("sync.connection", connection_id=7, queueing_lock="sync:7")  # the lock is free again
    runner.run_pending(clock.advance(hours=2))
    assert sorted(ran) == [7, 7, 8, 13, 13]
    (item,) = list_parked(store)
    assert item.type == "job" and item.name == "sync.connection" and item.last_error == "HandlerFailed"
    with store.session() as session:
        assert session.scalar(select(QueuedJob.status).where(QueuedJob.id == int(item.id.split(":")[1]))) == PARKED


# -- periodic jobs ----------------------------------------------------------------------------


def test_periodic_jobs_run_when_due_and_not_before_and_survive_a_restart(store: Store) -> None:
    ran: list[datetime] = []
    clock = Clock()

    def registry() -> JobRegistry:
        r = JobRegistry()
        r.add_periodic("tick", timedelta(minutes=10), lambda store: ran.append(clock()))
        return r

    runner = runner_for(store, registry(), clock)  # random 0.5: first run half an interval after first sight
    runner.run_pending()
    runner.run_pending(clock.advance(minutes=4))
    assert ran == []
    runner.run_pending(clock.advance(minutes=1))
    assert ran == [T0 + timedelta(minutes=5)]
    runner.run_pending(clock.advance(minutes=9))
    assert len(ran) == 1
    # A restart (a new runner, a new registry) does not fire the job again early.
    restarted = runner_for(store, registry(), clock)
    restarted.run_pending()
    assert len(ran) == 1
    restarted.run_pending(clock.advance(minutes=1))
    assert ran[-1] == T0 + timedelta(minutes=15)


def test_a_failing_periodic_job_records_its_error_and_runs_again_next_period(store: Store) -> None:
    registry = JobRegistry()
    calls: list[int] = []

    def flaky(store: Store) -> None:
        calls.append(1)
        raise HandlerFailed("nope")

    registry.add_periodic("flaky", timedelta(minutes=1), flaky)
    clock = Clock()
    runner = runner_for(store, registry, clock, random=lambda: 0.0)
    runner.run_pending()
    runner.run_pending(clock.advance(seconds=30))
    runner.run_pending(clock.advance(seconds=30))
    assert len(calls) == 2
    with store.session() as session:
        state = session.get_one(PeriodicJobState, "flaky")
        assert state.last_error == "HandlerFailed" and state.running_until is None


def test_two_workers_on_one_database_never_both_claim_a_periodic_run(store: Store) -> None:
    registry = JobRegistry()
    registry.add_periodic("sweep", timedelta(minutes=10), lambda store: None)
    (spec,) = registry.periodic
    p = policy(random=lambda: 0.0)
    ensure_periodic(store, registry, T0, p)
    url = store.engine.url.render_as_string(hide_password=False)
    stores = [Store(make_engine(url)) for _ in range(4)]
    try:
        with ThreadPoolExecutor(4) as pool:
            for round_ in range(8):
                now = T0 + timedelta(minutes=10 * round_)
                barrier = threading.Barrier(4)

                def contend(s: Store, now: datetime = now, barrier: threading.Barrier = barrier) -> bool:
                    barrier.wait(timeout=30)
                    lease = claim_periodic(s, spec, now, p)
                    if lease is not None:  # finish the run so the next round's claim is possible
                        _finish(s, spec.name, lease, None)
                    return lease is not None

                wins = list(pool.map(contend, stores))
                assert sum(wins) == 1, f"round {round_}: {wins}"
    finally:
        for s in stores:
            s.close()


def test_a_periodic_run_still_in_progress_is_not_started_again(store: Store) -> None:
    started = threading.Event()
    release = threading.Event()
    runs: list[str] = []

    def slow(store: Store) -> None:
        runs.append(threading.current_thread().name)
        started.set()
        assert release.wait(timeout=60)

    registry = JobRegistry()
    registry.add_periodic("slow", timedelta(minutes=1), slow)
    clock = Clock()
    a = runner_for(store, registry, clock, random=lambda: 0.0)
    url = store.engine.url.render_as_string(hide_password=False)
    other = Store(make_engine(url))
    b = InProcessRunner(other, registry, policy=policy(random=lambda: 0.0), clock=clock)
    thread = threading.Thread(target=a.run_pending, args=(T0,), name="worker-a")
    try:
        thread.start()
        assert started.wait(timeout=60)
        # Two intervals later the run is overdue, but worker A still holds it.
        assert b.run_pending(T0 + timedelta(minutes=2)) == 0
        release.set()
        thread.join(timeout=60)
        assert b.run_pending(T0 + timedelta(minutes=2)) == 1
    finally:
        release.set()
        thread.join(timeout=60)
        other.close()
    assert len(runs) == 2


def test_a_handler_writing_through_its_own_sessions_is_not_blocked_by_the_delivery(store: Store) -> None:
    # The clients service's handler takes the store and opens its own transactions; on SQLite the
    # delivery's session must not hold the write lock while it runs.
    def own_sessions(store: Store, event: Event) -> None:
        with store.session() as session:
            session.add(Therapist(email=f"{event.event_id}@example.org"))

    registry = JobRegistry()
    registry.add_handler("own", "occurrence.created", own_sessions)
    runner = runner_for(store, registry, Clock())
    event_id = add_event(store)
    assert runner.run_pending() == 1
    assert deliveries(store)[(event_id, "own")].status == DONE
    with store.session() as session:
        assert len(session.scalars(select(Therapist)).all()) == 1


# -- retention --------------------------------------------------------------------------------


def test_finished_work_older_than_the_retention_is_pruned_and_nothing_else(store: Store) -> None:
    from core.jobs.retention import prune_finished

    registry = JobRegistry()
    registry.add_handler("ok", "*", recorder([]))
    registry.add_handler("flaky", "occurrence.cancelled", recorder([], fail=lambda e: True))
    registry.add_job("sync.connection", lambda store, connection_id: None)
    clock = Clock()
    runner = runner_for(store, registry, clock, max_attempts=1)
    old_done = [add_event(store) for _ in range(3)]
    old_parked = add_event(store, kind="occurrence.cancelled")
    runner.defer("sync.connection", connection_id=1)
    runner.run_pending()
    clock.advance(days=20)
    recent = add_event(store)
    also_recent = add_event(store)
    runner.defer("sync.connection", connection_id=2)
    runner.run_pending()
    add_event(store, occurrence_id=9)
    runner.defer("sync.connection", run_at=clock.now + timedelta(days=40), connection_id=3)  # pending
    counts = prune_finished(store, timedelta(days=14), now=clock.now)
    assert (counts.events, counts.deliveries, counts.jobs) == (3, 3, 1)
    with store.session() as session:
        left = set(session.scalars(select(OutboxEvent.event_id)))
        jobs = sorted(session.scalars(select(QueuedJob.status)))
    assert not left & set(old_done)
    assert {old_parked, recent, also_recent} <= left  # parked waits for an operator; recent is kept
    assert jobs == [DONE, PENDING]
    assert [i.name for i in list_parked(store)] == ["flaky"]
    # Pruning again finds nothing; a later run with everything old takes the rest that is done.
    assert prune_finished(store, timedelta(days=14), now=clock.now) == type(counts)(0, 0, 0)
    later = prune_finished(store, timedelta(days=14), now=clock.advance(days=30))
    assert later.events >= 2 and later.jobs == 1
    with store.session() as session:
        assert old_parked in set(session.scalars(select(OutboxEvent.event_id)))
    with pytest.raises(ValueError):
        prune_finished(store, timedelta(days=-1))
