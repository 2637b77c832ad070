"""Coalesced run requests: "run job X for key K soon", however often it is asked.

What a webhook needs when every ping means "something changed, sync this connection":

- at most one run *waits* per key: requests while one waits are absorbed into it;
- a request while a run is *in progress* queues exactly one follow-up run (the waiting one), so a
  change notified during a sync is never lost, and a burst of pings costs one extra run, not one
  per ping;
- the waiting run does not start while the run in progress holds the key (``run_job`` leaves it
  pending until then), so two workers never run the same key at once.

These are procrastinate's ``queueing_lock`` plus ``lock`` (reference/scale.md, section 4): a
distributed runner implements :func:`request_run` by deferring with both set to ``key``, and the
callers (webhooks, sweeps) do not change. Nothing here knows about HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from core.jobs.backend import RunRequest
from core.jobs.models import PENDING, QueuedJob
from core.jobs.queue import lock_held
from core.jobs.registry import JobRegistry
from core.store import Store

__all__ = ["RunRequest", "key_busy", "request_run", "request_run_in", "request_runs_in", "waiting"]


def request_run(
    store: Store,
    registry: JobRegistry,
    job: str,
    *,
    key: str,
    now: datetime,
    delay: timedelta = timedelta(0),
    **args: Any,
) -> bool:
    """Ask for one run of ``job(store, **args)`` under ``key`` at ``now + delay``.

    Returns False when a run already waiting under ``key`` absorbed the request; that run is then
    moved earlier if it was due later (a ping must not wait for a reconciliation scheduled in a
    minute). Its arguments stay those of the first request: one key means one kind of work.
    """
    with store.session() as session:
        return request_run_in(session, registry, job, key=key, now=now, delay=delay, **args)


def request_run_in(
    session: Session,
    registry: JobRegistry,
    job: str,
    *,
    key: str,
    now: datetime,
    delay: timedelta = timedelta(0),
    **args: Any,
) -> bool:
    """:func:`request_run` inside the caller's transaction (a webhook that verified the ping in it):
    the run is requested exactly when that transaction commits."""
    registry.job_named(job)  # an unknown name is a programming error: fail here, not in the worker
    return registry.backend.request_in(session, job, args, key=key, run_at=now + delay)


def request_runs_in(session: Session, registry: JobRegistry, job: str, requests: Sequence[RunRequest]) -> list[bool]:
    """:func:`request_run_in` for several keys at once (no key twice): a webhook's batch of pings
    for several connections asks in one go, which a distributed queue answers in two statements
    rather than a few per key. One result per request, in order."""
    registry.job_named(job)
    if not requests:
        return []
    if len({r.key for r in requests}) != len(requests):
        raise ValueError("request_runs_in: a key asked for twice in one batch")
    return registry.backend.request_many_in(session, job, requests)


def key_busy(session: Session, key: str, now: datetime) -> bool:
    """Whether a job holding ``key`` is running now (its claim not yet run out)."""
    return lock_held(session, key, now, -1)


def waiting(session: Session, key: str) -> bool:
    """Whether a run under ``key`` waits to start."""
    return bool(session.scalar(select(exists().where(QueuedJob.queueing_lock == key, QueuedJob.status == PENDING))))
