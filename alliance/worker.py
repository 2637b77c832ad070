"""The embedded worker: runs outbox handlers and periodic jobs inside ``alliance serve``.

Interface used by the web app (``/readyz``) and ``alliance serve``: ``start()``, ``stop(timeout)``,
``is_alive()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Protocol

from alliance.jobs import build_registry, retry_policy
from alliance.settings import Settings
from core.jobs import InProcessRunner, JobRegistry
from core.redaction import describe_error, format_exception_safely
from core.store import Store

__all__ = ["BackgroundWorker", "EmbeddedWorker"]

log = logging.getLogger(__name__)

# A tick that does no heartbeat for this long counts as hung. One ICS fetch may take up to two
# minutes (integrations.ics.fetch.TOTAL_SECONDS) without reporting progress, hence the floor.
MIN_STALE_SECONDS = 180.0
STALE_POLL_INTERVALS = 30


class BackgroundWorker(Protocol):
    """What the web app and ``alliance serve`` need of a worker: this one or alliance.queue's."""

    def start(self) -> None: ...

    def stop(self, timeout: float = 10.0) -> None: ...

    def wake(self, after: float = 0.0) -> None: ...

    def is_alive(self) -> bool: ...


def _utcnow() -> datetime:
    return datetime.now(UTC)


class EmbeddedWorker:
    """A background thread running the job runner on the embedded default.

    Each loop: one tick of the runner (relay and deliver the outbox, run due periodic and
    deferred jobs), then a pause of ``worker_poll_seconds`` that :meth:`stop` cuts short. A tick
    that did work is followed by the next at once. An error in a tick (the database away for a
    moment) is logged and the loop goes on; handler errors never reach it (they are retried).
    """

    def __init__(
        self,
        store: Store,
        settings: Settings,
        *,
        registry: JobRegistry | None = None,
        clock: Callable[[], datetime] = _utcnow,
        poll_interval: float | None = None,
        stale_after: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.settings = settings
        self.poll_interval = poll_interval if poll_interval is not None else settings.worker_poll_seconds
        self.stale_after = (
            stale_after
            if stale_after is not None
            else max(MIN_STALE_SECONDS, STALE_POLL_INTERVALS * self.poll_interval)
        )
        self._monotonic = monotonic
        self.runner = InProcessRunner(
            store,
            registry if registry is not None else build_registry(settings, heartbeat=self._beat),
            policy=retry_policy(settings),
            clock=clock,
            on_progress=self._beat,
        )
        self._stop = threading.Event()
        self._wake = threading.Event()
        # A wake-up for now (``_kicked``) or for when a job requested for later falls due (``_due``,
        # time.monotonic(): a debounced ping's sync); both guarded by ``_wake_lock``.
        self._kicked = False
        self._due: float | None = None
        self._wake_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._heartbeat: float | None = None
        self.ticks = 0

    def _beat(self) -> None:
        self._heartbeat = self._monotonic()

    def start(self) -> None:
        """Start the loop in a daemon thread (no-op when it already runs)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._beat()
        self._thread = threading.Thread(target=self._loop, name="alliance-worker", daemon=True)
        self._thread.start()
        log.info("embedded worker started", extra={"poll_seconds": self.poll_interval})

    def wake(self, after: float = 0.0) -> None:
        """Cut the current pause short: work was just queued (a push ping asked for a sync).

        ``after`` seconds when that work is due only then (a debounced sync): the pause ends at
        that moment instead of at the next poll, and no tick runs before it.
        """
        with self._wake_lock:
            if after > 0:
                due = time.monotonic() + after
                if self._due is None or due < self._due:
                    self._due = due
            else:
                self._kicked = True
        self._wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the loop to stop and wait up to ``timeout`` seconds for the current tick to end."""
        self._stop.set()
        self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                log.warning("embedded worker still busy after %.0f s; it stops after its current job", timeout)
            else:
                log.info("embedded worker stopped")

    def is_alive(self) -> bool:
        """True while the worker loop runs (``/readyz`` reports it): thread running, heartbeat fresh."""
        thread = self._thread
        if thread is None or not thread.is_alive() or self._stop.is_set():
            return False
        beat = self._heartbeat
        return beat is not None and self._monotonic() - beat <= self.stale_after

    def tick(self) -> int:
        """Run one tick in the calling thread; how many units of work ran (a failed tick counts 0)."""
        self._beat()
        try:
            ran = self.runner.run_pending()
        except Exception as exc:  # e.g. the database restarting: log it, keep the loop
            log.error("worker tick failed: %s", describe_error(exc))
            log.debug("worker tick failure: %s", format_exception_safely(exc))
            ran = 0
        self.ticks += 1
        self._beat()
        return ran

    def _rest(self) -> None:
        """Pause until the next poll, a :meth:`wake`, :meth:`stop`, or a job announced as due falls due."""
        poll_end = time.monotonic() + self.poll_interval
        while not self._stop.is_set():
            with self._wake_lock:
                now = time.monotonic()
                if self._kicked or now >= poll_end:
                    self._kicked = False
                    return
                if self._due is not None and self._due <= now:
                    self._due = None
                    return
                self._wake.clear()  # under the lock: a wake() after this sets it again
                until = poll_end if self._due is None else min(poll_end, self._due)
            self._wake.wait(until - now)

    def _loop(self) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()  # before the tick: a wake-up during it means "tick again"
                ran = self.tick()
                if ran == 0:
                    self._rest()
        except BaseException as exc:  # the thread ends here; say so instead of dying silently
            log.critical("embedded worker loop died: %s", describe_error(exc))
