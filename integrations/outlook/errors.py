"""Typed errors at the Graph / identity boundary: callers never look at HTTP status codes.

- :class:`ReauthorizationRequired` (from ``core``): consent is gone; the user must connect again.
- :class:`DeltaExpired` (a ``CursorExpired``): Graph no longer knows the delta state (410,
  ``SyncStateNotFound``); the next listing must be a complete one.
- :class:`GraphUnavailable`: throttling, 5xx or timeouts that outlasted the retries.
- :class:`RequestRejected` / :class:`NotFound`: refusals retrying cannot fix.
"""

from __future__ import annotations

from core.sync.types import CursorExpired, ReauthorizationRequired, SourceError, SourceUnavailable

RECONNECT_HINT = "run 'alliance connect outlook' again to reconnect this calendar"


class DeltaExpired(CursorExpired):
    """Graph answered 410 / SyncStateNotFound: the delta link is gone."""


class GraphUnavailable(SourceUnavailable):
    """Graph or the identity platform kept failing (429, 5xx, timeouts) through every retry."""


class RequestRejected(SourceError):
    """Graph refused the request for a reason retrying cannot fix."""


class NotFound(RequestRejected):
    """The item does not exist (any more), or this account cannot see it."""


class PreconditionFailed(RequestRejected):
    """If-Match named an older changeKey: someone changed the event in between (412)."""


__all__ = [
    "RECONNECT_HINT",
    "DeltaExpired",
    "GraphUnavailable",
    "NotFound",
    "PreconditionFailed",
    "ReauthorizationRequired",
    "RequestRejected",
]
