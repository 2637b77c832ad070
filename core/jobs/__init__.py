"""Jobs: outbox handlers, deferred and periodic jobs behind a small runner interface.

Register functions on a :class:`JobRegistry`; run them with a :class:`JobRunner`
(:class:`InProcessRunner` on the embedded default). See ``core.jobs.outbox`` for the delivery
guarantee and ``core.jobs.runner`` for how a distributed queue plugs in.
"""

from core.jobs.admin import ParkedItem, list_parked, retry_parked
from core.jobs.backend import EmbeddedBackend, JobBackend
from core.jobs.models import DONE, PARKED, PENDING, RUNNING, OutboxDelivery, PeriodicJobState, QueuedJob
from core.jobs.outbox import deliver_one, mark_finished_events, relay
from core.jobs.policy import DEFAULT_MAX_ATTEMPTS, RetryPolicy
from core.jobs.registry import (
    ALL_KINDS,
    DuplicateJobName,
    Event,
    Handler,
    JobFunction,
    JobRegistry,
    UnknownJob,
)
from core.jobs.runner import InProcessRunner, JobRunner

__all__ = [
    "ALL_KINDS",
    "DEFAULT_MAX_ATTEMPTS",
    "DONE",
    "PARKED",
    "PENDING",
    "RUNNING",
    "DuplicateJobName",
    "EmbeddedBackend",
    "Event",
    "Handler",
    "InProcessRunner",
    "JobBackend",
    "JobFunction",
    "JobRegistry",
    "JobRunner",
    "OutboxDelivery",
    "ParkedItem",
    "PeriodicJobState",
    "QueuedJob",
    "RetryPolicy",
    "UnknownJob",
    "deliver_one",
    "list_parked",
    "mark_finished_events",
    "relay",
    "retry_parked",
]
