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
from datetime import UTC, datetime, timedelta

from alliance import outlook_push, video_writeback
from alliance.mail import build_transport, mail_policy
from alliance.push import PUSH_RENEW, RENEW_EVERY, maintain_channels
from alliance.reconcile import SYNC_CONNECTION, plan_reconciliation, sweep_period, sync_connection_job
from alliance.settings import Settings
from core.audit import Actor
from core.client_mail import ClientMailConfig, MailPlanConfig, parse_hours, reconcile, reconcile_occurrence
from core.client_mail import sweep as client_mail_sweep
from core.clients import handle_outbox_event
from core.clients.events import SESSION_ASSIGNED
from core.jobs import Event, Handler, JobRegistry, RetryPolicy
from core.jobs.retention import prune_finished
from core.links import LinkPolicy, handle_session_assigned
from core.mail import deliver_due
from core.notes import relink_orphaned_session, retire_superseded_keys
from core.ratings import record_session_end
from core.store import Store

__all__ = [
    "DELIVER_MAIL",
    "OCCURRENCE_KINDS",
    "OUTBOX_HANDLERS",
    "PRUNE_FINISHED",
    "PUSH_RENEW",
    "RETIRE_KEYS",
    "SYNC_ALL",
    "SYNC_CONNECTION",
    "build_registry",
    "retry_policy",
]

log = logging.getLogger(__name__)

SYNC_ALL = "sync.all"
PRUNE_FINISHED = "jobs.prune"
DELIVER_MAIL = "mail.deliver"
RETIRE_KEYS = "keys.retire_superseded"

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
        # Through the delivery's transaction: the sessions made and the "done" mark commit together.
        handle_outbox_event(store, event.kind, event.occurrence_id, session=event.session)


def _issue_client_link(store: Store, event: Event) -> None:
    # Client links (issue 7): every newly assigned session gets its link; idempotent (a live link
    # is kept, a link of the session's previous client is replaced).
    session_id = event.payload.get("session_id")
    if isinstance(session_id, int):
        handle_session_assigned(store, event.therapist_id, session_id)


SESSION_ENDED = "session.ended"
"""The video platform reported a session's call (payload: session_id, ended_at, started_at, no_show)."""


def _record_session_end(store: Store, event: Event) -> None:
    # Client links (issue 7): the rating opens at the real end of the call. Payload instants are
    # ISO 8601 with an offset; "started_at" and "no_show" are optional. Idempotent (latest wins).
    payload = event.payload
    session_id = payload.get("session_id")
    if not isinstance(session_id, int):
        return
    ended = payload.get("ended_at")
    started = payload.get("started_at")
    record_session_end(
        store,
        session_id,
        ended_at=datetime.fromisoformat(ended) if isinstance(ended, str) else None,
        started_at=datetime.fromisoformat(started) if isinstance(started, str) else None,
        no_show=bool(payload.get("no_show", False)),
    )


def _retire_keys(store: Store) -> None:
    retired = retire_superseded_keys(store, Actor(None, f"job {RETIRE_KEYS}"))
    if retired:
        log.info("%d superseded data key(s) destroyed", retired)


def _relink_sessions(store: Store, event: Event) -> None:
    # A calendar connected again: sessions (and notes) of its removed twin move to the new
    # occurrences with the same identity (core.notes.orphans); idempotent.
    if event.occurrence_id is not None:
        relink_orphaned_session(store, event.occurrence_id)


# (name, outbox kinds, handler)
OUTBOX_HANDLERS: tuple[tuple[str, tuple[str, ...], Handler], ...] = (
    ("clients.assign_sessions", OCCURRENCE_KINDS, _assign_sessions),
    ("links.issue", (SESSION_ASSIGNED,), _issue_client_link),
    ("ratings.session_ended", (SESSION_ENDED,), _record_session_end),
    ("notes.relink_sessions", ("occurrence.created", "occurrence.restored"), _relink_sessions),
)


def retry_policy(settings: Settings) -> RetryPolicy:
    """The retry policy the settings ask for."""
    return RetryPolicy(max_attempts=settings.job_max_attempts, claim_for=timedelta(seconds=settings.job_claim_seconds))


def build_registry(
    settings: Settings,
    *,
    heartbeat: Callable[[], None] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> JobRegistry:
    """Every outbox handler and periodic job of Alliance.

    ``heartbeat`` is called while long jobs make progress (the embedded worker's liveness).
    ``clock`` is what jobs take as "now" when they schedule further work (the runner's clock in tests).
    """
    now = clock or _utcnow
    registry = JobRegistry()
    _select_backend(registry, settings, now)
    for name, kinds, handler in OUTBOX_HANDLERS:
        registry.add_handler(name, kinds, handler)

    # Syncs (issue 4): one job per connection, requested through core.jobs.coalesce by push pings
    # and by the reconciliation sweep below, which spreads the connections over the interval
    # (alliance.reconcile). A failing sync is recorded on its connection (health), not retried early.
    def sync_connection(store: Store, connection_id: int) -> None:
        progress = (lambda _done, _total: heartbeat()) if heartbeat is not None else None
        sync_connection_job(store, settings, registry, connection_id, now=now, progress=progress)

    def reconcile(store: Store) -> None:
        requested = plan_reconciliation(store, settings, registry, now())
        if requested:
            log.info("reconciliation: %d connection sync(s) requested", requested)

    def renew_channels(store: Store) -> None:
        maintain_channels(store, settings, now(), registry)

    registry.add_job(SYNC_CONNECTION, sync_connection)
    registry.add_periodic(SYNC_ALL, sweep_period(settings), reconcile)
    if settings.public_url is not None:
        registry.add_periodic(PUSH_RENEW, RENEW_EVERY, renew_channels)

    def prune(store: Store) -> None:
        """Forget finished work older than the retention period (core.jobs.retention)."""
        counts = prune_finished(store, timedelta(days=settings.job_retention_days))
        log.info("pruned %d event(s), %d delivery(ies), %d job(s)", counts.events, counts.deliveries, counts.jobs)

    registry.add_periodic(PRUNE_FINISHED, timedelta(days=1), prune)
    # Superseded data keys nothing is sealed under any more are destroyed (issue 8, core.crypto.retire).
    registry.add_periodic(RETIRE_KEYS, timedelta(hours=1), _retire_keys)

    transport = build_transport(settings)
    policy = mail_policy(settings)

    def deliver_mail(store: Store) -> None:
        """Send the mail that is due (core.mail); a server that is down only defers it."""
        counts = deliver_due(store, transport, policy)
        if counts.sent or counts.deferred or counts.failed:
            log.info("mail: %d sent, %d deferred, %d failed", counts.sent, counts.deferred, counts.failed)

    registry.add_periodic(DELIVER_MAIL, timedelta(seconds=settings.mail_poll_seconds), deliver_mail)
    _add_video_jobs(registry, settings)
    # Video links (issue 4/6, i46): written back onto Google events; the therapist told when one is missing.
    video_writeback.register_jobs(registry, settings)
    _add_video_notice(registry, settings)
    # Outlook change notifications (issue 5): coalesced syncs, lifecycle events, subscription upkeep.
    outlook_push.register_jobs(registry, settings)
    _add_client_mail_jobs(registry, settings)
    return registry


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _select_backend(registry: JobRegistry, settings: Settings, now: Callable[[], datetime]) -> None:
    # Scale-out (issue 9): on PostgreSQL jobs go to procrastinate unless ALLIANCE_QUEUE=embedded.
    from alliance.queue.selection import PROCRASTINATE, queue_kind

    if queue_kind(settings) == PROCRASTINATE:
        from alliance.queue.backend import ProcrastinateBackend

        registry.backend = ProcrastinateBackend(clock=now)


# --- Video links (issue 6): outbox handler + periodic sweep + Zoom call events -----------------
VIDEO_LIFECYCLE = "video.lifecycle"
VIDEO_SWEEP = "video.sweep"
VIDEO_CALL_EVENTS = "video.call_events"


def _add_video_jobs(registry: JobRegistry, settings: Settings) -> None:
    # Imported here so that the registry of a deployment without video links stays importable.
    from alliance.video import provider_factory, video_config
    from core.clients.events import SESSION_KINDS
    from core.video.calls import apply_call_events
    from core.video.service import SessionBusy, handle_event, sweep

    factory, config = provider_factory(settings), video_config(settings)

    def lifecycle(store: Store, event: Event) -> None:
        outcomes = handle_event(store, event.occurrence_id, event.payload, factory, config, session=event.session)
        if "busy" in outcomes.values():
            raise SessionBusy("a session of this event is held by another run; delivered again later")

    def sweep_sessions(store: Store) -> None:
        outcomes = sweep(store, factory, config)
        if outcomes:
            log.info("video sweep: %s", outcomes)

    registry.add_handler(VIDEO_LIFECYCLE, (*OCCURRENCE_KINDS, *SESSION_KINDS), lifecycle)
    registry.add_periodic(VIDEO_SWEEP, timedelta(seconds=settings.video_sweep_seconds), sweep_sessions)

    def call_events(store: Store) -> None:
        apply_call_events(store)

    registry.add_periodic(VIDEO_CALL_EVENTS, timedelta(seconds=settings.video_events_seconds), call_events)


# --- Video link missing: the therapist is told by e-mail (issue 6, i46) ---------------------------
VIDEO_NOTICE = "video.tell_therapist"


def _add_video_notice(registry: JobRegistry, settings: Settings) -> None:
    from core.video.notice import tell_link_missing
    from core.video.service import VIDEO_LINK_MISSING

    def notice(store: Store, event: Event) -> None:
        # Through the delivery's own transaction: the mail and the "done" mark commit together.
        tell_link_missing(store, event.session, event.payload, sender=settings.mail_from)

    registry.add_handler(VIDEO_NOTICE, (VIDEO_LINK_MISSING,), notice)


# --- Client e-mail (issue 7, clientmail): confirmation, reminders, rating link --------------------
CLIENT_MAIL = "client_mail.reconcile"
CLIENT_MAIL_SWEEP = "client_mail.sweep"


def client_mail_config(settings: Settings) -> ClientMailConfig:
    """The client-mail rules the settings ask for (reminder hours, language, link timing)."""
    link = LinkPolicy(
        valid_days=settings.link_valid_days,
        join_opens_minutes=settings.join_opens_minutes,
        rating_delay_minutes=settings.rating_delay_minutes,
        min_call_minutes=settings.rating_min_call_minutes,
    )
    return ClientMailConfig(
        base_url=settings.base_url,
        sender=settings.mail_from,
        language=settings.client_mail_language,
        plan=MailPlanConfig(reminder_hours=parse_hours(settings.reminder_hours), link=link),
    )


def _add_client_mail_jobs(registry: JobRegistry, settings: Settings) -> None:
    from core.clients.events import SESSION_KINDS

    config = client_mail_config(settings)

    def on_event(store: Store, event: Event) -> None:
        # Idempotent (dedupe keys): a redelivered event queues nothing new.
        session_id = event.payload.get("session_id")
        if event.kind == SESSION_ENDED:
            # The rating e-mail depends on the call's end: record it first (idempotent, the same
            # as ratings.session_ended does), whichever of the two handlers runs first.
            _record_session_end(store, event)
        if isinstance(session_id, int):
            # session.assigned makes sure the (new) client has a link, as links.issue does.
            reconcile(store, session_id, config, issue=event.kind == SESSION_ASSIGNED, reading=event.session)
        elif event.occurrence_id is not None:
            reconcile_occurrence(store, event.occurrence_id, config, reading=event.session)

    # Not occurrence.created: a new occurrence has no session yet (session.assigned follows).
    kinds = tuple(k for k in OCCURRENCE_KINDS if k != "occurrence.created")
    registry.add_handler(CLIENT_MAIL, (*kinds, *SESSION_KINDS, SESSION_ENDED), on_event)
    interval = timedelta(seconds=settings.client_mail_sweep_seconds)

    def sweep_sessions(store: Store) -> None:
        count = client_mail_sweep(store, config, lookahead=2 * interval)
        if count:
            log.info("client mail sweep: %d session(s) checked", count)

    registry.add_periodic(CLIENT_MAIL_SWEEP, interval, sweep_sessions)
