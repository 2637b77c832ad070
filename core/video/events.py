"""The outbox events of the video lifecycle (kinds; payloads carry ids and a reason code only)."""

from __future__ import annotations

__all__ = ["VIDEO_LINK_CHANGED", "VIDEO_LINK_MISSING"]

VIDEO_LINK_MISSING = "video.link_missing"
"""A session has no video link and Alliance stopped trying, or needs the therapist (payload:
``session_id``, ``reason``: no_connection, needs_reconnect, budget, gave_up, deleted_outside)."""

VIDEO_LINK_CHANGED = "video.link_changed"
"""The meeting Alliance made for a session got a link, or lost it (payload: ``session_id``).

Consumers read the session's current link (``core.video.writeback.link_target``), so an event
delivered late or twice does the right thing."""
