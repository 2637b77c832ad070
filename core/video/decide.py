"""What to do about one session's video link: one pure function, every case spelled out (STYLE 1).

Inputs are plain facts (what the calendar says, what we have, the clock); the output is one
:class:`Action`. No I/O: ``core.video.service`` carries the action out.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Action", "Have", "Status", "Want", "decide"]


class Status(enum.StrEnum):
    """A session's video-link status, as the therapist sees it."""

    NONE = "none"  # no link needed (in person, cancelled) or none yet for a past session
    LATER = "later"  # online, but outside the rolling window: created when it enters it
    PENDING = "pending"  # to be created / retried at ``next_attempt_at``
    DEFERRED = "deferred"  # the host's daily create/update budget is spent: retried after 00:00 UTC
    ACTIVE = "active"  # a working link (our meeting, or the event's own link)
    MISSING = "missing"  # no link, and the reason says why (therapist action may be needed)


class Action(enum.StrEnum):
    NOTHING = "nothing"
    CLEAR = "clear"  # nothing to delete: status none
    LATER = "later"
    CREATE = "create"
    RECOVER = "recover"  # a create may have reached the provider: look the marker up first
    MOVE = "move"
    DELETE = "delete"  # delete our meeting (or the one a lost create may have made), then clear
    USE_EXTERNAL = "use_external"  # the event carries its own link (deleting ours first if any)
    NO_CONNECTION = "no_connection"


@dataclass(frozen=True, slots=True)
class Want:
    """What the calendar and the session say."""

    online: bool
    cancelled: bool
    start: datetime
    end: datetime
    # A video link in the event that is not our own meeting's (Meet, Teams, another Zoom...).
    external_url: str | None


@dataclass(frozen=True, slots=True)
class Have:
    """What we have recorded."""

    status: Status
    provider: str | None
    meeting_id: str | None
    meeting_start: datetime | None
    meeting_minutes: int | None
    create_sent: bool  # a marker was recorded and a create may have been sent
    held: bool  # "missing" that only the therapist's retry lifts (gave up, deleted in Zoom)
    has_connection: bool
    external_url: str | None = None


def minutes(want: Want) -> int:
    return max(1, round((want.end - want.start).total_seconds() / 60))


def decide(want: Want, have: Have, now: datetime, window: timedelta) -> Action:
    ours = have.provider == "zoom" and (have.meeting_id is not None or have.create_sent)
    if want.end <= now:
        # The session is over: a meeting it had stays (the call happened, webhooks may still
        # come); nothing new is made for the past.
        return Action.NOTHING
    if not want.online or want.cancelled:
        # In person or cancelled: our meeting goes (also one a lost create may have made);
        # an external link is simply forgotten.
        if ours:
            return Action.DELETE
        return Action.NOTHING if have.status is Status.NONE and have.provider is None else Action.CLEAR
    if want.external_url is not None:
        # The event brings its own room. If we had made one (before the therapist added a Meet
        # link, say), ours is deleted so the client is not sent to two rooms.
        if ours:
            return Action.DELETE
        if have.provider == "external" and have.external_url == want.external_url and have.status is Status.ACTIVE:
            return Action.NOTHING
        return Action.USE_EXTERNAL
    if have.held:
        # Given up or deleted in Zoom by the therapist: only an explicit retry re-creates.
        return Action.NOTHING
    if have.provider == "zoom" and have.meeting_id is not None:
        if have.meeting_start != want.start or have.meeting_minutes != minutes(want):
            return Action.MOVE
        return Action.NOTHING
    if have.create_sent:
        # Checked before anything else (even outside the window): never two meetings.
        return Action.RECOVER
    if want.start > now + window:
        return Action.NOTHING if have.status is Status.LATER else Action.LATER
    if not have.has_connection:
        return Action.NO_CONNECTION
    return Action.CREATE
