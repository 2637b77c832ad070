"""Google push channels: ``events.watch`` and ``channels.stop`` (reference/providers.md 1.5).

- The channel id is ours (a UUID), ``type`` is ``web_hook``, and the token (up to 256 characters)
  comes back on every ping as ``X-Goog-Channel-Token``.
- Google has no renewal: a new channel is opened before the old one expires, and both deliver
  for a while. Google caps the lifetime (about a week for Calendar; 1 h when none is asked), so
  an expiration is always sent and the one Google returns is the one kept.
- ``channels.stop`` of a channel Google no longer knows answers 404: already stopped.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from integrations.base.push import OpenedChannel
from integrations.google.client import CalendarClient
from integrations.google.errors import NotFound, RequestRejected

log = logging.getLogger(__name__)

__all__ = ["close_channel", "open_channel"]


def _millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def open_channel(
    client: CalendarClient,
    calendar_id: str,
    *,
    channel_id: str,
    address: str,
    token: str,
    expires_at: datetime,
    event_types: tuple[str, ...] = (),
) -> OpenedChannel:
    """Open a channel on ``calendar_id``'s events; raise :class:`RequestRejected` when Google refuses."""
    body = {"id": channel_id, "type": "web_hook", "address": address, "token": token, "expiration": _millis(expires_at)}
    channel = client.watch_events(calendar_id, body, eventTypes=list(event_types) or None)
    resource_id = channel.get("resourceId")
    if not isinstance(resource_id, str) or not resource_id:
        raise RequestRejected("Google opened a push channel without a resourceId")
    raw_expiration = channel.get("expiration")
    try:
        # The discovery doc types it as a string of milliseconds since the epoch.
        expiry = datetime.fromtimestamp(int(raw_expiration) / 1000, tz=UTC) if raw_expiration else expires_at
    except (TypeError, ValueError):
        expiry = expires_at
    return OpenedChannel(channel_id=str(channel.get("id") or channel_id), resource_id=resource_id, expires_at=expiry)


def close_channel(client: CalendarClient, channel_id: str, resource_id: str) -> None:
    """Stop a channel; one Google no longer knows is already stopped."""
    try:
        client.stop_channel(channel_id, resource_id)
    except NotFound:
        log.info("Google push channel %s was already gone", channel_id)
