"""Write-back of video links: the meeting Alliance made for a session goes onto its calendar event.

Outbox handler of ``video.link_changed`` (``core.video.service`` writes it in the same
transaction as the link, when a meeting is made and when it goes). It reads what the event should
carry now (``core.video.writeback.link_target``), so a late or repeated delivery writes the
current state, never an old one, and asks the calendar provider to write it when the provider
declares :attr:`Capability.WRITE_BACK` (Google: PATCH with If-Match, 412 -> read again and
re-apply; ``integrations.google.writeback``). Nothing written names a client: a fixed label and
the link.

- The event is gone (deleted in the calendar): nothing to do.
- The provider refuses the write for good (Google: the therapist is not the organizer): logged,
  not retried; the session keeps its link in Alliance and on the client's page.
- The connection needs reconnecting: nothing now (its health already says so); the next link
  change after reconnecting writes again.
- Anything else (rate limits, quota, a 412 that kept coming): the delivery fails and the job
  runner retries it with backoff.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from alliance.providers import context_for, provider_for, registry
from alliance.settings import Settings
from core.jobs import Event, JobRegistry
from core.mirror import get_connection, therapist_timezone, update_connection_settings
from core.redaction import describe_error
from core.store import Store
from core.sync import ReauthorizationRequired
from core.video.service import VIDEO_LINK_CHANGED
from core.video.writeback import link_target
from integrations.base import Capability, ProviderError
from integrations.base.writeback import JoinLinkWriter, TargetGone, WriteRefused

__all__ = ["VIDEO_WRITEBACK", "register_jobs", "write_back"]

log = logging.getLogger(__name__)

VIDEO_WRITEBACK = "video.writeback"


def _writes_back(provider: str) -> bool:
    try:
        return Capability.WRITE_BACK in registry().get(provider).capabilities
    except ProviderError:
        return False


def write_back(store: Store, settings: Settings, session_id: int, now: datetime | None = None) -> str:
    """Make the session's calendar event carry its current Alliance link (or none); returns what happened."""
    target = link_target(store, session_id)
    if target is None:
        return "no_event"
    connection = get_connection(store, target.therapist_id, target.connection_id)
    if connection is None or not _writes_back(connection.provider):
        return "not_supported"
    context = context_for(settings, therapist_timezone(store, target.therapist_id), now or datetime.now(UTC))

    def save(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    writer = provider_for(connection, context, save_settings=save, store=store)
    if not isinstance(writer, JoinLinkWriter):
        log.warning("provider %s declares write-back but cannot write join links", connection.provider)
        return "not_supported"
    try:
        if target.link is None:
            changed = writer.remove_join_link(target.provider_id)
        else:
            changed = writer.write_join_link(target.provider_id, target.link)
    except TargetGone:
        return "event_gone"
    except WriteRefused as exc:
        # Retrying cannot fix it (e.g. the event is an attendee's copy of someone else's event).
        log.warning("video link not written back (%s)", describe_error(exc), extra={"session_id": session_id})
        return "refused"
    except ReauthorizationRequired as exc:
        log.warning("video link not written back (%s)", describe_error(exc), extra={"session_id": session_id})
        return "needs_reconnect"
    if not changed:
        return "unchanged"
    return "removed" if target.link is None else "written"


def register_jobs(registry: JobRegistry, settings: Settings) -> None:
    """Add the write-back handler to the job registry."""

    def handle(store: Store, event: Event) -> None:
        session_id = event.payload.get("session_id")
        if isinstance(session_id, int):
            outcome = write_back(store, settings, session_id)
            log.debug("video link write-back: %s", outcome, extra={"session_id": session_id})

    registry.add_handler(VIDEO_WRITEBACK, (VIDEO_LINK_CHANGED,), handle)
