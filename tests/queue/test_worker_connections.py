"""A worker's queue connections (alliance.queue.connect): each queue statement is one round trip to
PostgreSQL, and a connection the server terminated is replaced before anything runs on it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from procrastinate import App

from alliance.queue.connect import make_connector
from tests.postgres_admin import round_trips, terminate_backend

pytestmark = pytest.mark.postgres


async def _traced(app: App, tmp_path: Path, operation: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """Run ``operation`` on the connector's one pooled connection with libpq tracing it."""
    pool = app.connector.pool  # type: ignore[attr-defined]
    trace_file = tmp_path / "libpq.trace"
    with trace_file.open("w") as sink:
        async with pool.connection() as conn:
            conn.pgconn.trace(sink.fileno())
        result = await operation()
        async with pool.connection() as conn:
            conn.pgconn.untrace()
    return result, round_trips(trace_file.read_text())


def test_each_queue_statement_of_a_worker_is_one_round_trip(pg_url: str, tmp_path: Path) -> None:
    async def run() -> tuple[int, int, int, Any]:
        app = App(connector=make_connector(pg_url, max_size=1))
        async with app.open_async():
            manager = app.job_manager
            worker_id, registering = await _traced(app, tmp_path, lambda: manager.register_worker())
            job, fetching = await _traced(app, tmp_path, lambda: manager.fetch_job(queues=None, worker_id=worker_id))
            _, beating = await _traced(app, tmp_path, lambda: manager.update_heartbeat(worker_id))
            return registering, fetching, beating, job

    registering, fetching, beating, job = asyncio.run(run())
    assert job is None  # the queue is empty: the fetch really ran and found nothing
    # Not four each (a check, BEGIN, the statement, COMMIT), which is what procrastinate's own
    # pool settings cost a worker for every fetch, finish and heartbeat.
    assert (registering, fetching, beating) == (1, 1, 1)


def test_a_connection_the_server_terminated_a_moment_after_its_use_is_replaced_without_an_error(
    pg_url: str,
) -> None:
    async def backend_pid(app: App) -> int:
        row = await app.connector.execute_query_one_async("SELECT pg_backend_pid() AS pid")
        return int(row["pid"])

    async def run() -> tuple[int, int]:
        app = App(connector=make_connector(pg_url, max_size=1))
        async with app.open_async():
            first = await backend_pid(app)
            # A restart or an administrator ends it while it sits in the pool, well within the
            # idle time after which a pooled connection is pinged anyway.
            await asyncio.to_thread(terminate_backend, pg_url, first)
            return first, await backend_pid(app)

    first, second = asyncio.run(run())
    assert second != first  # the dead connection was noticed and replaced: the statement ran
