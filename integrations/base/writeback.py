"""The write-back role of a provider (declared as :attr:`Capability.WRITE_BACK`).

Alliance writes back only what it owns: a session's join link on the provider's event, marked
as Alliance's so the sync recognises the echo (no loop, no domain event). Video and client-link
features call :meth:`JoinLinkWriter.write_join_link` with the occurrence's ``provider_id``.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from core.sync.types import SourceError

__all__ = ["JoinLinkWriter", "TargetGone", "WriteRefused"]


class TargetGone(SourceError):
    """The event to write on no longer exists at the provider: nothing to write, nothing to retry."""


class WriteRefused(SourceError):
    """The provider refused the write for a reason retrying cannot fix (e.g. not the organizer's copy)."""


@runtime_checkable
class JoinLinkWriter(Protocol):
    def write_join_link(self, provider_id: str, link: str) -> bool:
        """Put ``link`` on the event ``provider_id`` (idempotent); True when something was written."""
        ...

    def remove_join_link(self, provider_id: str) -> bool:
        """Take Alliance's link off the event ``provider_id`` (idempotent); True when something was written."""
        ...
