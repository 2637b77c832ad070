"""Which jobs exist: the composition of outbox handlers and periodic jobs.

Every runner builds its registry here, the embedded worker today and a distributed queue's
workers later, so they all know the same job names.

Registering an outbox handler: add ``(name, kinds, fn)`` to :data:`OUTBOX_HANDLERS`, where
``fn(store, event)`` is idempotent by ``event.event_id`` (see ``core.jobs.outbox`` for what is
guaranteed), for example::

    def _assign_sessions(store: Store, event: Event) -> None:
        handle_outbox_event(store, event.kind, event.occurrence_id)

    ("clients.assign_sessions", OCCURRENCE_KINDS, _assign_sessions)

Registering a periodic job: ``registry.add_periodic(name, timedelta(...), fn)`` in
:func:`build_registry`, with ``fn(store)``; it runs once per interval across all workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from alliance import outlook_push
from alliance.mail import build_transport, mail_policy
from alliance.settings import Settings
from alliance.syncing import sync_all
from core.clients import handle_outbox_event
from core.jobs import Event, Handler, JobRegistry, RetryPolicy
from core.jobs.retention import prune_finished
from core.mail import deliver_due
from core.store import Store

__all__ = [
    "DELIVER_MAIL",
    "OCCURRENCE_KINDS",
    "OUTBOX_HANDLERS",
    "PRUNE_FINISHED",
    "SYNC_ALL",
    "build_registry",
    "retry_policy",
]

log = logging.getLogger(__name__)

SYNC_ALL = "sync.all"
PRUNE_FINISHED = "jobs.prune"
DELIVER_MAIL = "mail.deliver"

# The outbox kinds the sync engine writes (core.sync.engine, ``occurrence.<history kind>``).
OCCURRENCE_KINDS = (
    "occurrence.created",
    "occurrence.updated",
    "occurrence.rescheduled",
    "occurrence.cancelled",
    "occurrence.restored",
)


def _assign_sessions(store: Store, event: Event) -> None:
    # Series assignments and the attendee rule turn new or changed occurrences into sessions;
    # idempotent (core.clients.service), so at-least-once delivery is fine.
    if event.occurrence_id is not None:
        handle_outbox_event(store, event.kind, event.occurrence_id)


# (name, outbox kinds, handler)
OUTBOX_HANDLERS: tuple[tuple[str, tuple[str, ...], Handler], ...] = (
    ("clients.assign_sessions", OCCURRENCE_KINDS, _assign_sessions),
)


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy the settings ask for."""
    return RetryPolicy(max_attempts=settings.job_max_attempts)


def build_registry(settings: Settings, *, heartbeat: Callable[[], None] | None = None) -> JobRegistry:
    """Every outbox handler and periodic job of Alliance.

    ``heartbeat`` is called while long jobs make progress (the embedded worker's liveness).
    """
    registry = JobRegistry()
    for name, kinds, handler in OUTBOX_HANDLERS:
        registry.add_handler(name, kinds, handler)

    def beat(_connection: object) -> Callable[[int, int | None], None] | None:
        if heartbeat is None:
            return None
        return lambda _done, _total: heartbeat()

    def sync_every_connection(store: Store) -> None:
        """Sync every connection; a failing connection is recorded on it (health) and not retried early."""
        outcomes = sync_all(store, settings, progress_factory=beat)
        failed = sum(1 for o in outcomes if not o.ok)
        log.info("periodic sync: %d connection(s), %d failed", len(outcomes), failed)

    registry.add_periodic(SYNC_ALL, timedelta(minutes=settings.sync_interval_minutes), sync_every_connection)

    def prune(store: Store) -> None:
        """Forget finished work older than the retention period (core.jobs.retention)."""
        counts = prune_finished(store, timedelta(days=settings.job_retention_days))
        log.info("pruned %d event(s), %d delivery(ies), %d job(s)", counts.events, counts.deliveries, counts.jobs)

    registry.add_periodic(PRUNE_FINISHED, timedelta(days=1), prune)

    transport = build_transport(settings)
    policy = mail_policy(settings)

    def deliver_mail(store: Store) -> None:
        """Send the mail that is due (core.mail); a server that is down only defers it."""
        counts = deliver_due(store, transport, policy)
        if counts.sent or counts.deferred or counts.failed:
            log.info("mail: %d sent, %d deferred, %d failed", counts.sent, counts.deferred, counts.failed)

    registry.add_periodic(DELIVER_MAIL, timedelta(seconds=30), deliver_mail)
    # Outlook change notifications (issue 5): coalesced syncs, lifecycle events, subscription upkeep.
    outlook_push.register_jobs(registry, settings)
    return registry
