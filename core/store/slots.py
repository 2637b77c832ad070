"""At most N holders of a named resource at once: in one process, or across processes on PostgreSQL.

What Outlook needs (reference/scale.md sections 6.3 and 8): Graph allows 4 concurrent requests per
mailbox and Alliance keeps at most 2 in flight, although a sync, a write-back and a subscription
renewal of the same mailbox may run in different jobs, threads and worker processes.

- :class:`ThreadSlots`: a semaphore per key; enough for one process (the embedded SQLite default).
- :class:`AdvisorySlots`: the key hashed to an advisory-lock class id, with ``size`` slots as
  object ids 0..size-1. A holder takes the first free slot with ``pg_try_advisory_lock`` on its
  own pooled connection, keeps that connection for as long as it holds the slot, and unlocks it
  after. Session-level locks die with their session, so a process killed mid-request frees its
  slot. Threads of one process first pass the same per-key semaphore, so they wait in memory
  rather than polling the database.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

__all__ = ["AdvisorySlots", "Slots", "ThreadSlots", "slot_class_id"]


class Slots(Protocol):
    size: int

    def hold(self, key: str) -> AbstractContextManager[None]:
        """Block until one of ``size`` slots of ``key`` is free; hold it for the ``with`` block."""
        ...


class ThreadSlots:
    """``size`` holders per key among the threads of this process."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("at least one slot")
        self.size = size
        self._lock = threading.Lock()
        self._semaphores: dict[str, threading.BoundedSemaphore] = {}

    def semaphore(self, key: str) -> threading.BoundedSemaphore:
        with self._lock:
            return self._semaphores.setdefault(key, threading.BoundedSemaphore(self.size))

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self.semaphore(key):
            yield


def slot_class_id(namespace: str, key: str) -> int:
    """A stable signed 32-bit advisory-lock class id for ``key`` (the slot number is the object id)."""
    digest = hashlib.sha256(f"{namespace}\0{key}".encode()).digest()
    return int.from_bytes(digest[:4], "big", signed=True)


_TRY = text("SELECT pg_try_advisory_lock(:cls, :obj)")
_UNLOCK = text("SELECT pg_advisory_unlock(:cls, :obj)")


class AdvisorySlots:
    """``size`` holders per key across every process sharing one PostgreSQL database."""

    def __init__(
        self, engine: Engine, size: int, *, namespace: str = "slots", poll: float = 0.02, max_poll: float = 0.5
    ) -> None:
        if engine.dialect.name != "postgresql":
            raise ValueError("advisory slots need PostgreSQL; use ThreadSlots in one process")
        self.engine = engine
        self.size = size
        self.namespace = namespace
        self.poll = poll
        self.max_poll = max_poll
        self.local = ThreadSlots(size)

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        cls = slot_class_id(self.namespace, key)
        with self.local.hold(key):
            # Autocommit: a lock and an unlock are one round trip each, and the session is never
            # "idle in transaction" while the slot is held (advisory locks outlive transactions).
            connection = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            released = False
            try:
                slot = self._take(connection, cls)
                try:
                    yield
                finally:
                    connection.execute(_UNLOCK, {"cls": cls, "obj": slot})
                    released = True
            finally:
                if not released:
                    # Whether a lock is still held is unknown: never hand this session back to the pool.
                    connection.invalidate()
                connection.close()

    def _take(self, connection: Connection, cls: int) -> int:
        wait = self.poll
        while True:
            for slot in range(self.size):
                if connection.scalar(_TRY, {"cls": cls, "obj": slot}):
                    return slot
            time.sleep(wait)
            wait = min(self.max_poll, wait * 2)
