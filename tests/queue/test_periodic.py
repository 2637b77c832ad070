"""Periodic jobs on PostgreSQL: three worker processes, one run per tick."""

from __future__ import annotations

from datetime import datetime, timedelta
from itertools import pairwise

from core.store import Store
from tests.queue.conftest import Workers, rows, wait_until

TICKS = 6


def _ticks(store: Store) -> list[datetime]:
    return [
        datetime.fromisoformat(r[0])
        for r in rows(store, "SELECT args->>'tick' FROM procrastinate_jobs WHERE task_name = 'mail.deliver'")
    ]


def test_three_workers_run_each_tick_of_a_two_second_schedule_exactly_once(pg_store: Store, workers: Workers) -> None:
    two_seconds = {"ALLIANCE_MAIL_POLL_SECONDS": "2"}  # mail.deliver: a periodic job of the real registry
    for _ in range(3):
        workers.start(env=two_seconds)
    wait_until(lambda: len(_ticks(pg_store)) >= TICKS, f"{TICKS} ticks of mail.deliver", attempts=1200)
    workers.stop_all()
    ticks = sorted(_ticks(pg_store))
    assert len(ticks) == len(set(ticks))  # no tick ran twice
    gaps = [later - earlier for earlier, later in pairwise(ticks)]
    # On the schedule's grid: every gap is a whole number of intervals (a tick no worker was
    # around for is skipped, never doubled).
    assert all(gap >= timedelta(seconds=2) and gap % timedelta(seconds=2) == timedelta(0) for gap in gaps)
    succeeded = rows(
        pg_store, "SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'mail.deliver' AND status = 'succeeded'"
    )
    assert succeeded[0][0] >= TICKS - 1  # they ran (the last may have been cut by the stop)
