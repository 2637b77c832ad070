"""Coalesced run requests (core.jobs.coalesce): bursts become one run, a run in progress gets one follow-up."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core.jobs import DONE, PENDING, RUNNING, InProcessRunner, JobRegistry, QueuedJob, RetryPolicy
from core.jobs.coalesce import key_busy, request_run, waiting
from core.store import Store

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)


def _statuses(store: Store) -> list[str]:
    with store.session() as session:
        return list(session.scalars(select(QueuedJob.status).order_by(QueuedJob.id)))


def test_a_burst_of_requests_is_one_run(store: Store) -> None:
    runs: list[int] = []
    registry = JobRegistry()
    registry.add_job("work", lambda store, item: runs.append(item))
    answers = [request_run(store, registry, "work", key="work:7", now=T0, item=7) for _ in range(20)]
    assert answers == [True] + [False] * 19
    InProcessRunner(store, registry, clock=lambda: T0).run_pending()
    assert runs == [7]
    assert _statuses(store) == [DONE]


def test_a_request_during_a_run_gets_exactly_one_follow_up(store: Store) -> None:
    registry = JobRegistry()
    started, release = threading.Event(), threading.Event()
    runs: list[int] = []

    def slow(store: Store, item: int) -> None:
        runs.append(item)
        if len(runs) == 1:
            started.set()
            assert release.wait(30)

    registry.add_job("work", slow)
    runner = InProcessRunner(store, registry, clock=lambda: T0)
    request_run(store, registry, "work", key="work:7", now=T0, item=7)
    thread = threading.Thread(target=runner.run_pending)
    thread.start()
    try:
        assert started.wait(30)
        with store.session() as session:
            assert key_busy(session, "work:7", T0)
        # Ten pings while it runs: one follow-up waits, the other nine are absorbed into it.
        answers = [request_run(store, registry, "work", key="work:7", now=T0, item=7) for _ in range(10)]
        assert answers == [True] + [False] * 9
        assert _statuses(store) == [RUNNING, PENDING]
        # A second worker does not start the follow-up while the first run holds the key.
        assert InProcessRunner(store, registry, clock=lambda: T0).run_pending() == 0
        assert runs == [7]
    finally:
        release.set()
        thread.join(30)
    InProcessRunner(store, registry, clock=lambda: T0).run_pending()
    assert runs == [7, 7]
    assert _statuses(store) == [DONE, DONE]
    with store.session() as session:
        assert not waiting(session, "work:7")


def test_an_absorbed_request_moves_the_waiting_run_earlier(store: Store) -> None:
    registry = JobRegistry()
    runs: list[str] = []
    registry.add_job("work", lambda store, item: runs.append(item))
    assert request_run(store, registry, "work", key="k", now=T0, delay=timedelta(minutes=5), item="x")
    assert not request_run(store, registry, "work", key="k", now=T0, item="x")
    assert InProcessRunner(store, registry, clock=lambda: T0).run_pending() == 1
    assert runs == ["x"]
    # A later request never delays one that waits.
    request_run(store, registry, "work", key="k", now=T0, item="x")
    request_run(store, registry, "work", key="k", now=T0, delay=timedelta(hours=1), item="x")
    assert InProcessRunner(store, registry, clock=lambda: T0).run_pending() == 1


def test_other_keys_are_independent(store: Store) -> None:
    registry = JobRegistry()
    runs: list[int] = []
    registry.add_job("work", lambda store, item: runs.append(item))
    for item in (1, 2, 1, 3, 2):
        request_run(store, registry, "work", key=f"work:{item}", now=T0, item=item)
    InProcessRunner(store, registry, clock=lambda: T0, policy=RetryPolicy()).run_pending()
    assert sorted(runs) == [1, 2, 3]
