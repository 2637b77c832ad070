"""Which job functions exist: outbox handlers, deferrable jobs, periodic jobs.

Job functions are plain module-level-style functions taking the :class:`~core.store.Store` first,
so any runner (the in-process one here, a distributed queue later) can call the same function by
its name. Registration checks names and signatures at once instead of failing on first use.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.jobs.backend import EmbeddedBackend, JobBackend
from core.store import Store

__all__ = [
    "ALL_KINDS",
    "DuplicateJobName",
    "Event",
    "Handler",
    "HandlerSpec",
    "JobFunction",
    "JobRegistry",
    "PeriodicSpec",
    "UnknownJob",
]

ALL_KINDS = "*"


@dataclass(frozen=True)
class Event:
    """One outbox event as a handler sees it (ids and instants; the outbox never holds content).

    ``session`` is the transaction that records this delivery as done: a handler that writes only
    through it gets its writes and the "done" mark committed together (effectively once). A handler
    that writes elsewhere (its own sessions, a provider API) is run at least once and must be
    idempotent by ``event_id``. Do not write through both: on SQLite the two would wait on each other.
    """

    event_id: str
    kind: str
    therapist_id: int
    connection_id: int
    occurrence_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    attempt: int
    session: Session = field(repr=False, compare=False)


Handler = Callable[[Store, Event], None]
JobFunction = Callable[..., None]


class DuplicateJobName(ValueError):
    """A handler or job name is registered twice."""


class UnknownJob(LookupError):
    """No job is registered under this name."""


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    kinds: frozenset[str]
    fn: Handler

    def wants(self, kind: str) -> bool:
        return ALL_KINDS in self.kinds or kind in self.kinds


@dataclass(frozen=True)
class PeriodicSpec:
    name: str
    every: timedelta


def _check_signature(fn: Callable[..., Any], what: str, call: str, positional: int, *, partial: bool = False) -> None:
    """Refuse a function that cannot take ``positional`` positional arguments (plus keywords if ``partial``)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):  # builtins without a signature: trust the caller
        return
    try:
        (signature.bind_partial if partial else signature.bind)(*([None] * positional))
    except TypeError as exc:
        name = getattr(fn, "__qualname__", repr(fn))
        raise TypeError(f"{what}: {name}{signature} cannot be called as {call}: {exc}") from None


class JobRegistry:
    """Name -> function maps for outbox handlers, jobs and periodic jobs; names are unique."""

    def __init__(self) -> None:
        self._handlers: dict[str, HandlerSpec] = {}
        self._jobs: dict[str, JobFunction] = {}
        self._periodic: dict[str, PeriodicSpec] = {}
        # Where deferred jobs go (core.jobs.backend): the embedded table unless a queue adapter sets it.
        self.backend: JobBackend = EmbeddedBackend()

    # -- outbox handlers --------------------------------------------------------------------
    def add_handler(self, name: str, kinds: str | Iterable[str], fn: Handler) -> None:
        """Subscribe ``fn(store, event)`` to outbox ``kinds`` (``"*"`` for every kind) as ``name``."""
        if name in self._handlers:
            raise DuplicateJobName(f"an outbox handler named {name!r} is already registered")
        kind_set = frozenset([kinds] if isinstance(kinds, str) else kinds)
        if not kind_set:
            raise ValueError(f"outbox handler {name!r} subscribes to no event kind")
        _check_signature(fn, f"outbox handler {name!r}", "fn(store, event)", 2)
        self._handlers[name] = HandlerSpec(name, kind_set, fn)

    def handler(self, name: str, *kinds: str) -> Callable[[Handler], Handler]:
        """Decorator form of :meth:`add_handler`."""

        def register(fn: Handler) -> Handler:
            self.add_handler(name, kinds, fn)
            return fn

        return register

    def handlers_for(self, kind: str) -> list[HandlerSpec]:
        return [h for h in self._handlers.values() if h.wants(kind)]

    def handler_named(self, name: str) -> HandlerSpec | None:
        return self._handlers.get(name)

    @property
    def handlers(self) -> list[HandlerSpec]:
        return list(self._handlers.values())

    # -- jobs ---------------------------------------------------------------------------------
    def add_job(self, name: str, fn: JobFunction) -> None:
        """Register ``fn(store, **args)`` as the job ``name`` (arguments must be JSON values)."""
        if name in self._jobs:
            raise DuplicateJobName(f"a job named {name!r} is already registered")
        _check_signature(fn, f"job {name!r}", "fn(store, **args)", 1, partial=True)
        self._jobs[name] = fn

    def job(self, name: str) -> Callable[[JobFunction], JobFunction]:
        """Decorator form of :meth:`add_job`."""

        def register(fn: JobFunction) -> JobFunction:
            self.add_job(name, fn)
            return fn

        return register

    def add_periodic(self, name: str, every: timedelta, fn: JobFunction) -> None:
        """Register ``fn(store)`` as a job that runs every ``every`` (once across all workers)."""
        if every <= timedelta(0):
            raise ValueError(f"periodic job {name!r} needs a positive interval")
        self.add_job(name, fn)
        self._periodic[name] = PeriodicSpec(name, every)

    def job_named(self, name: str) -> JobFunction:
        try:
            return self._jobs[name]
        except KeyError:
            raise UnknownJob(f"no job named {name!r} is registered") from None

    @property
    def jobs(self) -> dict[str, JobFunction]:
        return dict(self._jobs)

    @property
    def periodic(self) -> list[PeriodicSpec]:
        return list(self._periodic.values())
