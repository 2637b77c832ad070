"""The stalled-jobs reaper: jobs left ``doing`` by a worker whose heartbeat went stale.

A worker killed mid-job (SIGKILL, the machine gone) leaves its job ``doing`` forever, and with it
the job's ``lock``: every later job of that connection would wait behind it. Once a minute:

- a stalled job holding a ``queueing_lock`` that has a ``todo`` sibling is finished as failed:
  the sibling does the same work, and retrying the stalled one would collide with the sibling's
  queueing lock (procrastinate #1446/#1543; reference/scale.md 6.4);
- every other stalled job is retried (back to ``todo``, run again: jobs are idempotent).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from procrastinate import exceptions, jobs, manager

__all__ = ["ReapCounts", "reap_stalled"]

log = logging.getLogger(__name__)

_HAS_TODO_SIBLING = """
SELECT EXISTS (
    SELECT 1 FROM procrastinate_jobs WHERE queueing_lock = %(lock)s AND status = 'todo' AND id <> %(id)s
) AS waiting
"""


@dataclass(frozen=True)
class ReapCounts:
    retried: int
    failed: int


async def _has_todo_sibling(job_manager: manager.JobManager, job: jobs.Job) -> bool:
    row = await job_manager.connector.execute_query_one_async(_HAS_TODO_SIBLING, lock=job.queueing_lock, id=job.id)
    return bool(row["waiting"])


async def reap_stalled(job_manager: manager.JobManager, *, stale_seconds: float) -> ReapCounts:
    """Retry or fail every job of a worker without a heartbeat for ``stale_seconds``."""
    retried = failed = 0
    for job in await job_manager.get_stalled_jobs(seconds_since_heartbeat=stale_seconds):
        assert job.id is not None
        where = {"job_id": job.id, "task": job.task_name}
        if job.queueing_lock is not None and await _has_todo_sibling(job_manager, job):
            await job_manager.finish_job_by_id_async(job.id, jobs.Status.FAILED, delete_job=False)
            failed += 1
            log.warning("stalled job finished as failed: a queued sibling does its work", extra=where)
            continue
        try:
            await job_manager.retry_job(job)
            retried += 1
            log.warning("stalled job retried (its worker stopped)", extra=where)
        except exceptions.ConnectorException:  # a sibling was queued meanwhile: it does the work
            await job_manager.finish_job_by_id_async(job.id, jobs.Status.FAILED, delete_job=False)
            failed += 1
            log.warning("stalled job finished as failed: a queued sibling does its work", extra=where)
    return ReapCounts(retried=retried, failed=failed)
