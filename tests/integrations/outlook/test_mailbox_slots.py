"""At most 2 Graph requests in flight per mailbox, across worker processes (issue 9, item 5).

A sync, a write-back and a subscription renewal of one mailbox may run in different worker
processes. Two real child processes (``slots_child``) hammer one mailbox of the emulator, which
counts the requests in flight: with the PostgreSQL advisory slots never more than 2; with only
the per-process limit (the embedded default's, one process) the two processes together reach 4.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from core.store.db import make_engine
from core.store.slots import AdvisorySlots, ThreadSlots, slot_class_id
from integrations.outlook.client import MAX_CONCURRENT
from tests.integrations.outlook.world import OutlookWorld, at, options_for, timed


def _run_two_processes(outlook: OutlookWorld, tmp_path: Path, database_url: str | None) -> int:
    event = outlook.seed({"subject": "S", **timed(at(1))})
    outlook.state.settings.latency = 0.15  # long enough for requests of both processes to overlap
    go = tmp_path / "go"
    job: dict[str, Any] = {
        "settings": outlook.settings(),
        "options": {**options_for(outlook.emu), "slots_database_url": database_url},
        "event_id": event["id"],
        "threads": 3,
        "requests": 4,
        "go": str(go),
    }
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps(job))
    children = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.integrations.outlook.slots_child", str(spec)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        for child in children:
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        outlook.state.max_in_flight = 0
        go.touch()
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0, err
            assert out.strip() == "done"
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    assert not [r for r in outlook.graph_requests() if r.status == 429]
    return int(outlook.state.max_in_flight)


def test_two_worker_processes_keep_at_most_two_requests_per_mailbox(
    outlook: OutlookWorld, tmp_path: Path, clean_postgres_url: str
) -> None:
    assert _run_two_processes(outlook, tmp_path, clean_postgres_url) == MAX_CONCURRENT == 2


def test_without_the_database_limit_two_processes_would_overlap_beyond_two(
    outlook: OutlookWorld, tmp_path: Path
) -> None:
    # What the advisory slots prevent: each process alone keeps 2, both together reach 4.
    assert _run_two_processes(outlook, tmp_path, None) > MAX_CONCURRENT


def test_advisory_slots_admit_size_holders_per_key_and_free_a_dead_holders_slot(clean_postgres_url: str) -> None:
    engines = [make_engine(clean_postgres_url) for _ in range(3)]  # three "processes"
    slots = [AdvisorySlots(e, 2, namespace="test", poll=0.01) for e in engines]
    try:
        entered = threading.Event()
        with slots[0].hold("mailbox-a"), slots[1].hold("mailbox-a"):

            def third() -> None:
                with slots[2].hold("mailbox-a"):
                    entered.set()

            waiter = threading.Thread(target=third)
            waiter.start()
            assert not entered.wait(0.5)  # both slots taken in other sessions: it waits
            with slots[2].hold("mailbox-b"):  # another mailbox is not held up
                pass
        waiter.join(10)
        assert entered.is_set()  # a slot was freed: it got in

        # A holder whose session dies (a killed worker) frees its slot with it.
        dead = engines[0].connect()
        cls = slot_class_id("test", "mailbox-c")
        assert dead.scalar(text("SELECT pg_try_advisory_lock(:c, 0)"), {"c": cls})
        assert dead.scalar(text("SELECT pg_try_advisory_lock(:c, 1)"), {"c": cls})
        dead.invalidate()  # the session ends without unlocking
        dead.close()
        done = threading.Event()

        def after_death() -> None:
            with slots[1].hold("mailbox-c"):
                done.set()

        survivor = threading.Thread(target=after_death)
        survivor.start()
        survivor.join(10)
        assert done.is_set()
    finally:
        for e in engines:
            e.dispose()


def test_thread_slots_admit_size_holders_per_key() -> None:
    slots = ThreadSlots(2)
    inside = 0
    peak = 0
    lock = threading.Lock()
    barrier = threading.Barrier(6)

    def work() -> None:
        nonlocal inside, peak
        barrier.wait()
        for _ in range(20):
            with slots.hold("mailbox"):
                with lock:
                    inside += 1
                    peak = max(peak, inside)
                threading.Event().wait(0.001)
                with lock:
                    inside -= 1

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert peak == 2
    with pytest.raises(ValueError):
        ThreadSlots(0)
