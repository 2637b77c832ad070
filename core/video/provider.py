"""What the video lifecycle needs from a meeting provider (Zoom today), and the errors it may raise.

Core knows no provider: ``integrations/zoom`` implements :class:`MeetingProvider` and maps its
own errors onto the ones below, so the lifecycle decides retries without seeing status codes
(STYLE 7).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = [
    "MeetingGone",
    "MeetingInProgress",
    "MeetingProvider",
    "MeetingSpec",
    "ProvidedMeeting",
    "ProviderNeedsReconnect",
    "ProviderRateLimited",
    "ProviderRejected",
    "ProviderUnavailable",
    "VideoProviderError",
]


@dataclass(frozen=True, slots=True)
class MeetingSpec:
    """One meeting to create. ``marker`` is a random token the provider stores with the meeting
    (Zoom: in the agenda) so a create whose answer was lost can be found again."""

    topic: str
    start: datetime  # aware
    duration_minutes: int
    timezone: str
    marker: str
    passcode: str


@dataclass(frozen=True, slots=True)
class ProvidedMeeting:
    meeting_id: str
    join_url: str
    start: datetime | None = None
    # What the provider has now: a meeting adopted by its marker may predate a move.
    duration_minutes: int | None = None


class VideoProviderError(Exception):
    """Base of every provider error; ``reason`` is safe to show and log (no client data)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ProviderUnavailable(VideoProviderError):
    """Timeouts, connection errors, 5xx: retry with backoff."""


class ProviderRateLimited(VideoProviderError):
    """429. ``retry_at`` is when to try again if the provider said (Retry-After) or we know
    (the per-host daily limit resets at 00:00 UTC); ``daily`` marks the per-host daily cap."""

    def __init__(self, reason: str, *, retry_at: datetime | None = None, daily: bool = False) -> None:
        super().__init__(reason)
        self.retry_at = retry_at
        self.daily = daily


class ProviderNeedsReconnect(VideoProviderError):
    """The credentials were revoked or are invalid: the therapist has to reconnect."""


class ProviderRejected(VideoProviderError):
    """The provider refused the request itself (4xx other than the above): retrying will not help."""


class MeetingGone(VideoProviderError):
    """The meeting does not exist (any more) at the provider (Zoom 3001)."""


@runtime_checkable
class MeetingProvider(Protocol):
    """Create, find, move and delete one host's meetings."""

    name: str

    def create(self, spec: MeetingSpec) -> ProvidedMeeting:
        """Create a meeting; the caller has recorded ``spec.marker`` before calling."""
        ...

    def find(self, marker: str) -> ProvidedMeeting | None:
        """The meeting created with ``marker``, if a create with it reached the provider."""
        ...

    def reschedule(self, meeting_id: str, start: datetime, duration_minutes: int, timezone: str) -> None:
        """Move a meeting; raises :class:`MeetingGone` if it no longer exists."""
        ...

    def delete(self, meeting_id: str) -> None:
        """Delete a meeting; raises :class:`MeetingGone` if it no longer exists."""
        ...


class MeetingInProgress(VideoProviderError):
    """The provider will not delete a meeting while it runs (Zoom 3002): try again later."""
