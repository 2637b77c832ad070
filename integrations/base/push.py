"""The push role of a provider (STYLE 5: small interfaces split by role, declared as a capability).

A provider declaring :attr:`Capability.PUSH` implements :class:`PushSource`: open a channel that
notifies ``address`` of changes, and close it. What a notification looks like is the webhook's
business (``webhooks/<provider>.py``); what to do with it (a coalesced incremental sync) is the
composition root's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

__all__ = ["OpenedChannel", "PushSource"]


@dataclass(frozen=True, slots=True)
class OpenedChannel:
    """A channel the provider accepted: its id, the provider's id of what it watches, its real expiry."""

    channel_id: str
    resource_id: str
    expires_at: datetime


@runtime_checkable
class PushSource(Protocol):
    def open_channel(self, *, channel_id: str, address: str, token: str, expires_at: datetime) -> OpenedChannel:
        """Ask the provider to notify ``address`` of changes until ``expires_at`` (it may cut that short)."""
        ...

    def close_channel(self, channel_id: str, resource_id: str) -> None:
        """Stop a channel; a channel the provider no longer knows counts as closed."""
        ...
