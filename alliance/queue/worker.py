"""A procrastinate worker process (or thread): the queue's worker, the periodic tick, the outbox listener.

``alliance worker`` runs :meth:`QueueWorker.run` in the foreground; ``alliance serve`` on
PostgreSQL runs one with :meth:`start` in a background thread, like the embedded worker, and
``/readyz`` asks :meth:`is_alive`. One asyncio loop carries:

- procrastinate's worker (fetch with ``SKIP LOCKED``, ``lock`` respected, heartbeat row in
  ``procrastinate_workers`` every ``ALLIANCE_WORKER_HEARTBEAT_SECONDS``);
- the periodic tick (alliance.queue.periodic) once a second;
- the outbox listener (alliance.queue.relay.listen);
- a timer for the earliest job scheduled for later (:class:`DueWakingWorker`).

Liveness is the heartbeat row itself: :meth:`is_alive` is False once it is older than
``ALLIANCE_WORKER_STALE_SECONDS`` (60 s), so a worker hung on a dead connection (procrastinate
#1334) fails its health check and its supervisor restarts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from procrastinate.worker import Worker
from sqlalchemy import text

from alliance.jobs import build_registry, retry_policy
from alliance.queue.backend import ProcrastinateBackend
from alliance.queue.connect import make_connector
from alliance.queue.periodic import tick
from alliance.queue.relay import listen, relay_once
from alliance.queue.tasks import build_app
from alliance.settings import Settings
from core.jobs import JobRegistry
from core.redaction import describe_error
from core.store import Store

__all__ = ["DueWakingWorker", "QueueWorker"]

log = logging.getLogger(__name__)

TICK_SECONDS = 1.0
# The periodic jobs' state rows are checked (created, intervals clamped) on the first tick and then
# every this many ticks: rows never go away while workers run, and a check costs a transaction.
ENSURE_EVERY_TICKS = 60
_HEARTBEAT_AGE = text("SELECT EXTRACT(EPOCH FROM (NOW() - last_heartbeat)) FROM procrastinate_workers WHERE id = :id")


def _utcnow() -> datetime:
    return datetime.now(UTC)


# Seconds from now (the database's clock, which decides "due" in procrastinate's fetch) to the
# earliest job of our queues that waits for its scheduled_at.
_NEXT_DUE = """
    SELECT EXTRACT(EPOCH FROM (min(scheduled_at) - now()))::float8 AS delay
      FROM procrastinate_jobs
     WHERE status = 'todo' AND scheduled_at > now()
       AND (%(queues)s::varchar[] IS NULL OR queue_name = ANY(%(queues)s::varchar[]))
"""
# Woken this much after the due time, so the fetch's now() is surely past it.
DUE_MARGIN_SECONDS = 0.005


class DueWakingWorker(Worker):
    """procrastinate's worker, also woken when a job scheduled for later falls due.

    procrastinate NOTIFYs on insert (a job due later wakes the workers too early, to find nothing)
    and otherwise polls every ``fetch_job_polling_interval``: a job deferred 1 s ahead (a spaced
    ping's sync, a delivery's next attempt) would wait for the next poll. After each fetch round
    that ended with nothing left to fetch, the earliest ``scheduled_at`` is read and a timer set
    for it, which wakes the fetch loop the way a NOTIFY does. A job made due by an UPDATE with no
    NOTIFY (procrastinate's own retry of a failed job) is found at the next wake-up, as before.

    procrastinate clears its wake-up event after every fetch, so a NOTIFY that arrives during a
    fetch which then finds nothing (the job was inserted after the fetch looked) was lost until
    the next poll; such a wake-up now makes the loop fetch once more.

    A job that finishes with a ``lock`` wakes the fetch loop too: a job waiting under the same
    lock (the follow-up sync a ping queued while its connection's sync ran) cannot be fetched
    until then, and its insert's NOTIFY came and went while the lock was held. Without this, the
    follow-up waited for the next poll (2 s by default) unless some other insert woke a worker
    (benchmarks/README.md, "Follow-up syncs start when the sync before them ends").
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._due_timer: asyncio.TimerHandle | None = None
        self._fetching = False
        self._woken_during_fetch = False

    async def _handle_notification(self, *, channel: str, notification: Any) -> None:
        if notification["type"] == "job_inserted":
            self._wake()  # procrastinate's own would be lost if it came during a fetch that finds nothing
        else:
            await super()._handle_notification(channel=channel, notification=notification)

    async def _process_job(self, context: Any) -> None:
        await super()._process_job(context)
        if context.job.lock is not None:  # finished, its lock released: a sibling may be fetchable now
            self._wake()

    async def _fetch_and_process_jobs(self) -> None:
        while True:
            self._fetching, self._woken_during_fetch = True, False
            try:
                await super()._fetch_and_process_jobs()  # type: ignore[no-untyped-call]
            finally:
                self._fetching = False
            # A wake-up during a fetch begun before its cause (a due time, a released lock):
            # procrastinate clears its wake-up event after every fetch, so it is gone; fetch again.
            if not self._woken_during_fetch or self._stop_event.is_set():
                break
        if not self._stop_event.is_set():
            await self._arm_due_timer()

    async def _arm_due_timer(self) -> None:
        try:
            row = await self.app.connector.execute_query_one_async(_NEXT_DUE, queues=self.queues)
        except Exception as exc:  # the next poll finds the job anyway
            log.warning("next due job: %s", describe_error(exc))
            return
        if self._due_timer is not None:
            self._due_timer.cancel()
            self._due_timer = None
        delay = row["delay"] if row else None
        if delay is not None:
            loop = asyncio.get_running_loop()
            self._due_timer = loop.call_later(max(0.0, delay) + DUE_MARGIN_SECONDS, self._fall_due)

    def _fall_due(self) -> None:
        self._due_timer = None
        self._wake()

    def _wake(self) -> None:
        if self._fetching:
            self._woken_during_fetch = True
        self._new_job_event.set()


class QueueWorker:
    """One procrastinate worker on the store's PostgreSQL database, with ``concurrency`` job slots
    (default: the ``ALLIANCE_WORKER_CONCURRENCY`` setting)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        concurrency: int | None = None,
        registry: JobRegistry | None = None,
        clock: Callable[[], datetime] = _utcnow,
        name: str | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.concurrency = concurrency if concurrency is not None else settings.worker_concurrency
        self.clock = clock
        self.name = name or "alliance-worker"
        self.registry = registry if registry is not None else build_registry(settings, clock=clock)
        backend = self.registry.backend
        self.backend = backend if isinstance(backend, ProcrastinateBackend) else ProcrastinateBackend(clock=clock)
        self.registry.backend = self.backend
        self.policy = retry_policy(settings)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._worker: Worker | None = None
        self._started = threading.Event()
        self._ticks_done = 0  # ticks run (the first ensures the periodic state rows)

    # -- lifecycle -------------------------------------------------------------------------
    def run(self) -> None:
        """Run in the calling thread until :meth:`stop` (or SIGINT/SIGTERM via the caller)."""
        asyncio.run(self._main())

    def start(self) -> None:
        """Run in a daemon thread (no-op when it already runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._started.clear()
        self._thread = threading.Thread(target=self.run, name="alliance-queue-worker", daemon=True)
        self._thread.start()
        self._started.wait(30)

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the worker to finish its running jobs and stop; wait up to ``timeout`` s (thread mode)."""
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wake(self, after: float = 0.0) -> None:
        """Nothing to do: procrastinate's insert trigger NOTIFYs the workers, and a job due later
        is fetched when it falls due (:class:`DueWakingWorker`)."""

    @property
    def worker_id(self) -> int | None:
        return self._worker.worker_id if self._worker is not None else None

    def is_alive(self) -> bool:
        """True while this worker's heartbeat row is younger than ``worker_stale_seconds``."""
        worker_id = self.worker_id
        if worker_id is None or (self._thread is not None and not self._thread.is_alive()):
            return False
        try:
            with self.store.engine.connect() as connection:
                age = connection.execute(_HEARTBEAT_AGE, {"id": worker_id}).scalar()
        except Exception as exc:  # the database away: not healthy either
            log.warning("worker health: %s", describe_error(exc))
            return False
        return age is not None and float(age) <= self.settings.worker_stale_seconds

    # -- the loop --------------------------------------------------------------------------
    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        connector = make_connector(self.settings.effective_database_url, max_size=self.concurrency + 4)
        app = build_app(
            self.store,
            self.registry,
            self.policy,
            connector=connector,
            backend=self.backend,
            stale_seconds=self.settings.worker_stale_seconds,
            clock=self.clock,
        )
        async with app.open_async():
            self._worker = DueWakingWorker(
                app,
                name=self.name,
                concurrency=self.concurrency,
                fetch_job_polling_interval=self.settings.worker_poll_seconds,
                install_signal_handlers=False,
                update_heartbeat_interval=self.settings.worker_heartbeat_seconds,
                stalled_worker_timeout=self.settings.worker_stale_seconds,
                shutdown_graceful_timeout=30,
            )
            worker_task = asyncio.create_task(self._worker.run(), name="procrastinate worker")  # type: ignore[no-untyped-call]
            side = [
                asyncio.create_task(self._ticks(), name="periodic tick"),
                asyncio.create_task(
                    listen(self.settings.effective_database_url, self._relay, stop=self._stop), name="outbox listener"
                ),
            ]
            self._started.set()
            log.info("queue worker started", extra={"concurrency": self.concurrency})
            stop_wait = asyncio.create_task(self._stop.wait())
            await asyncio.wait([worker_task, stop_wait], return_when=asyncio.FIRST_COMPLETED)
            self._stop.set()
            self._worker.stop()  # type: ignore[no-untyped-call]
            for task in side:
                task.cancel()
            await asyncio.gather(worker_task, *side, return_exceptions=True)
            stop_wait.cancel()
            log.info("queue worker stopped")

    def _relay(self) -> None:
        try:
            relay_once(self.store, self.registry, self.backend, self.clock())
        except Exception as exc:  # the sweep retries within a minute
            log.warning("outbox relay failed: %s", describe_error(exc))

    def _tick(self) -> None:
        ensure = self._ticks_done % ENSURE_EVERY_TICKS == 0
        self._ticks_done += 1
        try:
            tick(self.store, self.registry, self.backend, self.clock(), self.policy, ensure=ensure)
        except Exception as exc:
            log.warning("periodic tick failed: %s", describe_error(exc))

    async def _ticks(self) -> None:
        assert self._stop is not None
        while not self._stop.is_set():
            await asyncio.to_thread(self._tick)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=TICK_SECONDS)
