"""What the calendar event of a session should carry: the link of the meeting Alliance made.

The write-back job (``alliance.video_writeback``) asks :func:`link_target` each time a session's
meeting link changes (``video.link_changed``) and writes the answer onto the provider's event:
the link while Alliance's own meeting is active, nothing (the block removed) otherwise. A link
the event brought itself (Meet, Teams, a Zoom link the therapist pasted) is never written back:
it is already there and it is not Alliance's.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from core.clients.models import TherapySession
from core.crypto import Owner
from core.store import Store
from core.store.models import Connection, Occurrence
from core.video.decide import Status
from core.video.models import SessionVideo

__all__ = ["LinkTarget", "link_target"]


@dataclass(frozen=True, slots=True)
class LinkTarget:
    """Where a session's link belongs and which link (None: Alliance's block must go)."""

    therapist_id: int
    connection_id: int
    provider_id: str
    link: str | None


def link_target(store: Store, session_id: int) -> LinkTarget | None:
    """The event to write and the link it should carry; None when there is no live event to write to."""
    with store.session() as session:
        found = session.execute(
            select(Occurrence.provider_id, Connection.id, Connection.therapist_id, Connection.removed_at)
            .join(TherapySession, TherapySession.occurrence_id == Occurrence.id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(TherapySession.id == session_id)
        ).first()
        if found is None:
            return None
        provider_id, connection_id, therapist_id, removed_at = found
        if not provider_id or removed_at is not None:
            return None  # a feed without ids (ICS), or a calendar no longer connected
        row = session.scalar(select(SessionVideo).where(SessionVideo.session_id == session_id))
        link = None
        if row is not None and row.provider == "zoom" and row.status == Status.ACTIVE.value and row.join_url:
            link = store.keyring.decrypt(
                session, Owner("therapist", therapist_id), row.join_url, f"session_videos.join_url|{session_id}"
            ).decode()
        return LinkTarget(therapist_id, connection_id, provider_id, link)
