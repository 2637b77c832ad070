"""The provider asks the caller to slow down: a rate limit or an exhausted quota.

Raised by a provider's calls after its own short retries, so that whoever schedules the work
(sync, push channel upkeep) can pause it instead of trying again at once. ``quota`` marks usage
limits (Google 403 ``quotaExceeded``), which need a long pause; ``retry_after`` is what the
provider asked for, in seconds, when it said.
"""

from __future__ import annotations

from core.sync.types import SourceUnavailable

__all__ = ["Throttled"]


class Throttled(SourceUnavailable):
    """A rate limit or quota that outlasted the provider client's own retries.

    A :class:`SourceUnavailable`, so a sync that meets it backs off (``retry_after`` honoured).
    """

    quota: bool = False
