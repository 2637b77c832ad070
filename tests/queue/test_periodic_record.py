"""A periodic job's record (started, finished, last error) reads the same on both queues."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from alliance.queue.stats import PeriodicRow, periodic_rows
from alliance.queue.worker import QueueWorker
from alliance.settings import Settings
from core.jobs import JobRegistry, RetryPolicy
from core.jobs.periodic import run_due_periodic
from core.store import Store
from tests.queue.conftest import scalar, wait_until

EVERY = timedelta(seconds=1)


class MailboxUnreachable(Exception):
    """What the flaky job raises while ``failing`` is set."""


def _row(store: Store, name: str) -> PeriodicRow | None:
    return next((p for p in periodic_rows(store) if p.name == name), None)


def _embedded(store: Store, registry: JobRegistry) -> Callable[[], None]:
    """One pass of the embedded worker's loop: run what is due now."""
    policy = RetryPolicy(random=lambda: 0.0)

    def step() -> None:
        run_due_periodic(store, registry, datetime.now(UTC), policy)

    return step


@pytest.mark.parametrize("queue", ["embedded", "procrastinate"])
def test_a_periodic_run_records_its_start_end_and_error_on_either_queue(
    pg_store: Store, env: dict[str, str], settings: Settings, queue: str
) -> None:
    failing = threading.Event()
    failing.set()
    calls: dict[str, int] = {"steady": 0, "flaky": 0}

    def steady(store: Store) -> None:
        calls["steady"] += 1

    def flaky(store: Store) -> None:
        calls["flaky"] += 1
        if failing.is_set():
            raise MailboxUnreachable("the mailbox did not answer")

    registry = JobRegistry()
    registry.add_periodic("check.steady", EVERY, steady)
    registry.add_periodic("check.flaky", EVERY, flaky)
    before = datetime.now(UTC)
    worker: QueueWorker | None = None
    step: Callable[[], None] = lambda: None  # noqa: E731 - the procrastinate worker runs by itself
    if queue == "procrastinate":
        worker = QueueWorker(pg_store, settings, registry=registry)
        worker.start()
    else:
        step = _embedded(pg_store, registry)

    def recorded(name: str, error: str | None, after: datetime) -> PeriodicRow | None:
        step()
        row = _row(pg_store, name)
        done = row is not None and row.last_finished_at is not None and row.last_finished_at > after
        return row if done and row is not None and row.last_error == error else None

    try:
        failed = wait_until(lambda: recorded("check.flaky", "MailboxUnreachable", before), "the flaky job failed")
        ok = wait_until(lambda: recorded("check.steady", None, before), "the steady job ran")
        assert ok.last_started_at is not None and ok.last_started_at >= before
        assert failed.last_started_at is not None and failed.last_started_at >= before
        # A failure is recorded, not raised: the next period is the retry, the worker keeps going,
        # and on procrastinate no failed job piles up per tick.
        failing.clear()
        assert failed.last_finished_at is not None
        wait_until(lambda: recorded("check.flaky", None, failed.last_finished_at), "the flaky job ran again, fine")
    finally:
        if worker is not None:
            worker.stop()
    assert calls["flaky"] >= 2
    if queue == "procrastinate":
        assert scalar(pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE status = 'failed'") == 0
    # What the operator reads (the real command, either queue): the same record.
    shown = subprocess.run(
        [sys.executable, "-m", "alliance", "jobs", "periodic", "--json"],
        env={**env, "ALLIANCE_QUEUE": queue},
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    by_name = {p["name"]: p for p in json.loads(shown.stdout)}
    assert by_name["check.flaky"] == _row(pg_store, "check.flaky").as_dict()  # type: ignore[union-attr]
    assert by_name["check.flaky"]["last_error"] is None and by_name["check.flaky"]["last_finished_at"]
