"""The host's daily create/update budget under concurrent workers.

Several workers taking from a host's budget on a fresh day must all count, and a spent budget
must stop exactly the requests past it: a worker that saw another one's freshly created
day row must not read it as "spent" (that deferred a meeting to the next day in CI).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core.mirror import ensure_therapist
from core.store import Store
from core.video.models import HostBudget
from core.video.service import _take_budget, connect_video

WORKERS = 4


def _race(store: Store, connection_id: int, now: datetime, budget: int) -> list[bool]:
    barrier = threading.Barrier(WORKERS)
    taken: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        barrier.wait()
        result = _take_budget(store, connection_id, now, budget)
        with lock:
            taken.append(result)

    threads = [threading.Thread(target=work) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return taken


def _used(store: Store, connection_id: int, now: datetime) -> int | None:
    with store.session() as session:
        return session.scalar(
            select(HostBudget.used).where(
                HostBudget.connection_id == connection_id, HostBudget.day == now.astimezone(UTC).date()
            )
        )


def test_workers_starting_a_new_day_together_all_count(store: Store) -> None:
    therapist = ensure_therapist(store, "ana@example.org")
    connection_id = connect_video(store, therapist, "zoom", "s2s", {"user_id": "me"})
    start = datetime(2030, 1, 1, 12, tzinfo=UTC)
    for day in range(25):  # each round is the first request of its day: the row does not exist yet
        now = start + timedelta(days=day)
        assert _race(store, connection_id, now, budget=100) == [True] * WORKERS, f"day {day}"
        assert _used(store, connection_id, now) == WORKERS


def test_a_spent_budget_stops_exactly_the_requests_past_it(store: Store) -> None:
    therapist = ensure_therapist(store, "ana@example.org")
    connection_id = connect_video(store, therapist, "zoom", "s2s", {"user_id": "me"})
    now = datetime(2030, 1, 1, 12, tzinfo=UTC)
    assert sorted(_race(store, connection_id, now, budget=3)) == [False, True, True, True]
    assert _used(store, connection_id, now) == 3
    assert _take_budget(store, connection_id, now, 3) is False
    # The next UTC day starts a fresh budget.
    assert _take_budget(store, connection_id, now + timedelta(days=1), 3) is True
