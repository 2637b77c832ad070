"""Typed errors at the Google client boundary: callers never look at HTTP status codes.

- :class:`ReauthorizationRequired` (from ``core``): the grant is gone; the user must connect again.
- :class:`SyncTokenExpired` (a ``CursorExpired``): Google wants a full listing (410).
- :class:`QuotaExceeded`: Google's usage limits (403 ``quotaExceeded``); retrying now makes it worse.
- :class:`GoogleUnavailable`: rate limits, 5xx or timeouts that outlasted the retries
  (:class:`RateLimited` for the rate limits; it and :class:`QuotaExceeded` are ``Throttled``).
- :class:`RequestRejected`: any other refusal (a calendar that no longer exists, a bad request).
"""

from __future__ import annotations

from core.sync.types import CursorExpired, ReauthorizationRequired, SourceError, SourceUnavailable
from integrations.base.throttle import Throttled

RECONNECT_HINT = "run 'alliance connect google' again to reconnect this calendar"


class SyncTokenExpired(CursorExpired):
    """Google answered 410 (``fullSyncRequired``): the next listing must be a complete one."""


class QuotaExceeded(Throttled):
    """Google's usage limits are exhausted; not retried at once: the sync job backs off
    (core.sync.backoff) and push-channel upkeep pauses (core.push.pause)."""

    quota = True


class GoogleUnavailable(SourceUnavailable):
    """Google kept failing (rate limits, server errors, timeouts) through every retry."""


class RateLimited(GoogleUnavailable, Throttled):
    """Google kept answering ``rateLimitExceeded`` (403/429) through every retry."""


class RequestRejected(SourceError):
    """Google refused the request for a reason retrying cannot fix."""


class PreconditionFailed(RequestRejected):
    """412 ``conditionNotMet``: the event changed since the etag sent with ``If-Match``."""


class NotFound(RequestRejected):
    """The calendar (or event) does not exist, or this account cannot see it."""


__all__ = [
    "RECONNECT_HINT",
    "GoogleUnavailable",
    "NotFound",
    "PreconditionFailed",
    "QuotaExceeded",
    "RateLimited",
    "ReauthorizationRequired",
    "RequestRejected",
    "SyncTokenExpired",
]
