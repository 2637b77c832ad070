"""The data a calendar source hands to the sync engine.

These types live in ``core`` (not in ``integrations/base``) because the engine consumes them and
``core`` must not import anything above it; ``integrations.base`` re-exports them for providers.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Protocol, runtime_checkable


class Status(enum.StrEnum):
    CONFIRMED = "confirmed"
    TENTATIVE = "tentative"
    CANCELLED = "cancelled"


@dataclass(frozen=True, slots=True, order=True)
class OccurrenceKey:
    """Identity of one time slot inside a connection (DESIGN.md, "Identity").

    ``recurrence_id`` is the original start of an instance of a series, normalised by
    :func:`recurrence_id_for`; it is ``""`` for a single (non-recurring) event.
    """

    ical_uid: str
    recurrence_id: str = ""


def recurrence_id_for(original_start: datetime | date | None, *, all_day: bool = False) -> str:
    """Normalise an instance's original start into the stable string used in the identity.

    Timed instances become UTC ISO 8601 (``2026-10-27T17:00:00+00:00``) so that the same instant
    written with any TZID maps to one key; all-day instances keep their date (``2026-10-27``).
    """
    if original_start is None:
        return ""
    if not isinstance(original_start, datetime):  # a bare date: an all-day instance
        return original_start.isoformat()
    if all_day:
        return original_start.date().isoformat()
    if original_start.tzinfo is None:
        raise ValueError("a timed recurrence id must be time-zone aware")
    return original_start.astimezone(UTC).isoformat()


@dataclass(frozen=True, slots=True)
class RemoteOccurrence:
    """One concrete occurrence as the provider currently shows it.

    ``start``/``end`` are aware UTC instants. For all-day occurrences they are midnight UTC of the
    first day and of the day after the last (end exclusive), and ``all_day`` is set.
    """

    key: OccurrenceKey
    start: datetime
    end: datetime
    status: Status = Status.CONFIRMED
    all_day: bool = False
    timezone: str | None = None
    provider_id: str | None = None
    title: str = ""
    description: str = ""
    location: str = ""
    url: str = ""
    conference_url: str = ""
    attendees: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"occurrence {self.key} has a naive start or end")
        if self.end < self.start:
            raise ValueError(f"occurrence {self.key} ends before it starts")


@dataclass(frozen=True, slots=True)
class ChangePage:
    """One page of changes.

    ``complete`` means the pages of this listing together enumerate every occurrence the source
    has inside ``window`` (or everywhere when ``window`` is None): the engine then sweeps what was
    not seen (mark-and-sweep). ``next_cursor`` is only meaningful on the last page.

    ``complete_uids`` is the same promise for a few UIDs within one page: its upserts are every
    occurrence those UIDs have inside ``window``, so the engine cancels their other occurrences
    there. A delta source uses it when a whole series changed (moved, cut short) and the
    instances whose original slot vanished are never reported one by one.

    ``resumable`` False: should the listing stop after this page and before its last, the old
    cursor may never bring back what this page showed (Graph names as removed only what it
    delivered under that cursor's own state), so the next sync lists everything instead.
    """

    upserts: tuple[RemoteOccurrence, ...] = ()
    removals: tuple[OccurrenceKey, ...] = ()
    is_last: bool = True
    next_cursor: str | None = None
    complete: bool = False
    window: tuple[datetime, datetime] | None = None
    complete_uids: tuple[str, ...] = ()
    resumable: bool = True
    total_hint: int | None = field(default=None, compare=False)


class CursorExpired(Exception):
    """The source no longer accepts the cursor (Google 410, Graph SyncStateNotFound...)."""


class SourceError(Exception):
    """The source could not be read; the message is one clear line for the user."""


class SourceUnavailable(SourceError):
    """The source is throttling or temporarily down (429, 5xx, timeouts, quota): trying later may work.

    ``retry_after`` is the provider's own wait in seconds (``Retry-After``) when it gave one; the
    sync job backs off at least that long (core.sync.backoff) instead of retrying early.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ReauthorizationRequired(SourceError):
    """The source's grant was revoked or expired for good (OAuth ``invalid_grant``, 401 after a refresh).

    Retrying cannot help: the user must connect the calendar again. The message says how.
    """


class ChangeSource(Protocol):
    """What the engine needs from a provider: changes since a cursor, page by page."""

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """Yield pages of changes since ``cursor`` (everything when ``cursor`` is None).

        Raise :class:`CursorExpired` (before or during iteration) when the cursor is invalid.
        """
        ...


# Provider ids -> the identity the connection's mirror holds under each (ids it does not hold are
# left out; where several of its occurrences carry one id, a live one is named).
MirroredKeys = Callable[[Sequence[str]], dict[str, OccurrenceKey]]


@runtime_checkable
class ConsultsMirror(Protocol):
    """A source that learns from the mirror which occurrence a provider id was.

    Graph names a deleted event only by its id: the Outlook provider asks the mirror for its
    identity instead of carrying an index of every id in its cursor (which was then rewritten by
    every round, ~1.5 MB at 10,000 events). The engine calls :meth:`consult_mirror` before
    :meth:`ChangeSource.list_changes`. What earlier pages of the same listing stored may not be
    committed yet when the source asks, so a source remembers its own listing's identities itself.
    """

    def consult_mirror(self, mirrored: MirroredKeys) -> None:
        """Use ``mirrored`` for this sync's lookups."""
        ...
