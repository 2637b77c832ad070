"""The embedded worker runs a debounced job when it falls due, not at its next poll (10 minutes here)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.jobs import JobRegistry
from core.jobs.coalesce import request_run
from core.store import Store


def _until(check: object, attempts: int = 200) -> bool:
    for _ in range(attempts):  # a bound against hangs (20 s), far below the 10-minute poll
        if callable(check) and check():
            return True
        time.sleep(0.1)
    return False


def test_a_job_announced_for_later_runs_when_it_falls_due(sqlite_store: Store, tmp_path: Path) -> None:
    ran: list[str] = []
    registry = JobRegistry()
    registry.add_job("note", lambda store, **args: ran.append(args["what"]))
    worker = EmbeddedWorker(
        sqlite_store, Settings(home=tmp_path / "home", timezone="UTC"), registry=registry, poll_interval=600
    )
    worker.start()
    try:
        assert _until(lambda: worker.ticks >= 1)  # the first tick, then a 10-minute pause
        delay = timedelta(milliseconds=300)
        request_run(sqlite_store, registry, "note", key="k", now=datetime.now(UTC), delay=delay, what="ping")
        worker.wake(after=delay.total_seconds())  # what the webhook does for a debounced sync
        assert _until(lambda: ran == ["ping"])
    finally:
        worker.stop()
