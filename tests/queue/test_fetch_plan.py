"""A worker's fetch stays cheap under a backlog, even with statistics from a quiet moment.

procrastinate's fetch takes the first job it may run in (priority, id) order. Planned with
statistics that saw (almost) no waiting jobs, it read every waiting job, checked each one's lock
and sorted them all, per fetch (migration 0014_fetch_plan). What is counted here is PostgreSQL's
work for one fetch: the buffers it touched, which do not depend on the machine's speed.
"""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Connection, text

from core.store.db import make_engine

pytestmark = pytest.mark.postgres

BACKLOG = 2000
# A fetch that walks the priority index from its head reads a few index and heap pages and does
# one lock check (~50 buffers; ~90 when the session re-plans, catalog reads included); a fetch
# that reads the whole backlog touches ~3 buffers per waiting job (6,000 here).
WALK_BUFFERS = 150

_DEFER = text(
    """
    SELECT count(*) FROM unnest(procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW('default', 'sync.connection', 0, 'connection:' || n, 'connection:' || n,
                   '{}'::jsonb, NULL)::procrastinate_job_to_defer_v1
          FROM generate_series(1, :count) AS n)))
    """
)


def _fetch_buffers(conn: Connection, worker_id: int) -> tuple[int, int]:
    """(buffers one fetch touched, id of the job it took); the caller rolls the fetch back."""
    plan = conn.execute(
        text("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM procrastinate_fetch_job_v2(NULL, :w)"),
        {"w": worker_id},
    ).scalar_one()
    top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
    taken = conn.execute(text("SELECT min(id) FROM procrastinate_jobs WHERE status = 'doing'")).scalar_one()
    return int(top["Shared Hit Blocks"]) + int(top["Shared Read Blocks"]), int(taken)


def test_one_fetch_reads_a_few_buffers_with_two_thousand_jobs_waiting(pg_url: str) -> None:
    engine = make_engine(pg_url)
    try:
        with engine.begin() as conn:
            # Statistics of a quiet queue (a worker starts, then a burst of syncs arrives): the
            # planner believes nothing waits.
            conn.execute(text("ANALYZE procrastinate_jobs"))
            assert conn.execute(_DEFER, {"count": BACKLOG}).scalar_one() == BACKLOG
            worker_id = conn.execute(text("SELECT worker_id FROM procrastinate_register_worker_v1()")).scalar_one()
            first_waiting = conn.execute(text("SELECT min(id) FROM procrastinate_jobs")).scalar_one()
        # A session of its own (no plan cached before the burst) that fetches again and again,
        # as a worker does: its plan is made on the first fetch (whose planning reads the
        # catalog) and may turn generic after five.
        fetches = []
        with engine.connect() as conn, conn.begin():
            for _ in range(10):
                savepoint = conn.begin_nested()
                fetches.append(_fetch_buffers(conn, worker_id))
                savepoint.rollback()
        touched = [buffers for buffers, _ in fetches]
        for buffers, taken in fetches[1:]:
            assert taken == first_waiting  # the first job waiting, every time
            assert buffers <= WALK_BUFFERS, f"fetches touched {touched} buffers with {BACKLOG} jobs waiting"
    finally:
        engine.dispose()
