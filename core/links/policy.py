"""When a client's link shows what: a pure function of the session's times and the clock."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta


@dataclass(frozen=True, slots=True)
class LinkPolicy:
    """The timing rules of client links (from settings; defaults as in the issue)."""

    valid_days: int = 7
    join_opens_minutes: int = 15
    rating_delay_minutes: int = 5
    min_call_minutes: int = 10


@dataclass(frozen=True, slots=True)
class CallTimes:
    """What the video platform reported about the call, when it did (``session.ended``)."""

    started_at: datetime | None
    ended_at: datetime | None
    no_show: bool = False


class Phase(enum.StrEnum):
    CANCELLED = "cancelled"  # the occurrence was cancelled: say so, with the contact line
    BEFORE = "before"  # checklist, device check, Join (open from join_opens_at)
    RATING = "rating"  # the session is over: the rating form
    RATED = "rated"  # the rating was received
    DECLINED = "declined"  # the client would rather not rate this one
    NO_RATING = "no_rating"  # over, but not rated: nobody came, or the call was too short


def expires_at(end: datetime, policy: LinkPolicy) -> datetime:
    """The link stops resolving this long after the session's (current) scheduled end."""
    return end + timedelta(days=policy.valid_days)


def join_opens_at(start: datetime, policy: LinkPolicy) -> datetime:
    return start - timedelta(minutes=policy.join_opens_minutes)


def rating_opens_at(end: datetime, call: CallTimes | None, policy: LinkPolicy) -> datetime | None:
    """When the rating opens; None when this session is not rated.

    With a real end from the video platform: at that end, except for a no-show or a call shorter
    than ``min_call_minutes``. Without one: the scheduled end plus ``rating_delay_minutes``.
    """
    if call is not None:
        if call.no_show:
            return None
        if call.ended_at is not None:
            if call.started_at is not None and call.ended_at - call.started_at < timedelta(
                minutes=policy.min_call_minutes
            ):
                return None
            return call.ended_at
    return end + timedelta(minutes=policy.rating_delay_minutes)


def phase(
    *,
    cancelled: bool,
    rated: bool,
    end: datetime,
    call: CallTimes | None,
    policy: LinkPolicy,
    now: datetime,
    declined: bool = False,
) -> Phase:
    """What the link shows at ``now``; every case spelled out, cancellation first."""
    if cancelled:
        # Even a session rated before it was cancelled (moved out later) is now "cancelled".
        return Phase.CANCELLED
    if rated:
        return Phase.RATED
    if declined:
        return Phase.DECLINED
    opens = rating_opens_at(end, call, policy)
    if opens is None:
        # A no-show or a too-short call: before the scheduled end the page still helps to join
        # (the platform may have reported an early, aborted attempt); after it, nothing to rate.
        scheduled_over = now >= end
        return Phase.NO_RATING if scheduled_over else Phase.BEFORE
    return Phase.RATING if now >= opens else Phase.BEFORE


def join_open(*, start: datetime, end: datetime, policy: LinkPolicy, now: datetime) -> bool:
    """Join works from ``join_opens_minutes`` before the start until the scheduled end."""
    return join_opens_at(start, policy) <= now < end


__all__ = [
    "CallTimes",
    "LinkPolicy",
    "Phase",
    "expires_at",
    "join_open",
    "join_opens_at",
    "phase",
    "rating_opens_at",
]
