"""Typed errors at the Zoom client boundary (STYLE 7): callers never look at status codes.

Each is also the core error the video lifecycle understands, so ``core.video`` decides retries
without knowing Zoom.
"""

from __future__ import annotations

from core.video.provider import (
    MeetingGone,
    MeetingInProgress,
    ProviderNeedsReconnect,
    ProviderRateLimited,
    ProviderRejected,
    ProviderUnavailable,
)

__all__ = [
    "ZoomAuthError",
    "ZoomMeetingInProgress",
    "ZoomMeetingNotFound",
    "ZoomRateLimited",
    "ZoomRejected",
    "ZoomUnavailable",
]


class ZoomUnavailable(ProviderUnavailable):
    """Network error, timeout or 5xx: retry with backoff."""


class ZoomRateLimited(ProviderRateLimited):
    """429: per-second (retry soon) or the host's daily create/update limit (retry after 00:00 UTC)."""


class ZoomAuthError(ProviderNeedsReconnect):
    """Credentials rejected even with a fresh token (revoked grant, deactivated app, wrong secret)."""


class ZoomMeetingNotFound(MeetingGone):
    """Zoom code 3001: the meeting does not exist or has expired."""


class ZoomRejected(ProviderRejected):
    """Any other 4xx: the request itself is wrong; retrying will not help."""


class ZoomMeetingInProgress(MeetingInProgress):
    """Zoom code 3002: a meeting in progress cannot be deleted."""
