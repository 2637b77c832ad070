"""The sync decision: one pure function, every case spelled out (no I/O here)."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from core.sync.types import Status


class Action(enum.StrEnum):
    NOTHING = "nothing"
    CREATE = "create"
    # First sighting of an instance that is already cancelled (e.g. a cancelled exception of a
    # series): kept so history is complete, but no domain event since nobody knew of it.
    CREATE_CANCELLED = "create_cancelled"
    UPDATE = "update"
    RESCHEDULE = "reschedule"
    CANCEL = "cancel"
    RESTORE = "restore"


@dataclass(frozen=True, slots=True)
class LocalState:
    """What the mirror holds for one identity."""

    status: Status
    start: datetime
    end: datetime
    content_hash: str


@dataclass(frozen=True, slots=True)
class RemoteState:
    """What the source shows for one identity; None means "gone from the source"."""

    status: Status
    start: datetime
    end: datetime
    content_hash: str


def decide(local: LocalState | None, remote: RemoteState | None) -> Action:
    """Decide what to do with one identity given the mirror's and the source's view."""
    if local is None:
        if remote is None:
            # A removal for something never mirrored (replayed tombstone, or an instance outside
            # the window): nothing to cancel.
            return Action.NOTHING
        if remote.status is Status.CANCELLED:
            return Action.CREATE_CANCELLED
        return Action.CREATE

    local_live = local.status is not Status.CANCELLED
    if remote is None or remote.status is Status.CANCELLED:
        # Gone or cancelled at the source. Cancelling twice is a no-op: replays are harmless.
        return Action.CANCEL if local_live else Action.NOTHING

    if not local_live:
        # Cancelled here, live again at the source (undo in the calendar app, or an instance that
        # came back into a series): restore, with new times if they moved meanwhile.
        return Action.RESTORE

    if (local.start, local.end) != (remote.start, remote.end):
        return Action.RESCHEDULE
    if local.content_hash != remote.content_hash or local.status is not remote.status:
        # Same slot, different content (title, link, tentative <-> confirmed...).
        return Action.UPDATE
    # Identical content: a spurious etag bump or a replayed page does no work.
    return Action.NOTHING
