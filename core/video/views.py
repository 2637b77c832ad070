"""Reading sessions' video links (CLI, API): provider, status, reason, the link itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from core.clients.models import TherapySession
from core.crypto import Owner
from core.store import Store
from core.store.models import Connection, Occurrence
from core.video.decide import Status
from core.video.models import SessionVideo

__all__ = ["VideoLinkView", "video_links", "video_record"]


@dataclass(frozen=True, slots=True)
class VideoLinkView:
    provider: str | None
    status: str
    reason: str | None
    join_url: str | None
    meeting_id: str | None
    attempts: int
    next_attempt_at: datetime | None
    call_started_at: datetime | None
    call_ended_at: datetime | None
    host_joined_at: datetime | None
    host_left_at: datetime | None
    client_joined_at: datetime | None
    client_left_at: datetime | None

    @property
    def link_status(self) -> str:
        """What the therapist needs to know: the link is there, coming, missing, or not needed."""
        if self.status == Status.ACTIVE.value and self.join_url:
            return "ok"
        if self.status == Status.MISSING.value:
            return "missing"
        if self.status in (Status.PENDING.value, Status.DEFERRED.value, Status.LATER.value):
            return "pending"
        return "none"


def _context(session_id: int) -> str:
    return f"session_videos.join_url|{session_id}"


def video_links(store: Store, therapist_id: int, session_ids: Sequence[int]) -> dict[int, VideoLinkView]:
    """The video link of each of this therapist's sessions that has one recorded."""
    if not session_ids:
        return {}
    out: dict[int, VideoLinkView] = {}
    owner = Owner("therapist", therapist_id)
    with store.session() as session:
        rows = session.scalars(
            select(SessionVideo)
            .join(TherapySession, TherapySession.id == SessionVideo.session_id)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Connection.therapist_id == therapist_id, SessionVideo.session_id.in_(list(session_ids)))
        )
        for row in rows:
            url = (
                store.keyring.decrypt(session, owner, row.join_url, _context(row.session_id)).decode()
                if row.join_url is not None
                else None
            )
            out[row.session_id] = VideoLinkView(
                provider=row.provider,
                status=row.status,
                reason=row.reason,
                join_url=url,
                meeting_id=row.meeting_id,
                attempts=row.attempts,
                next_attempt_at=row.next_attempt_at,
                call_started_at=row.call_started_at,
                call_ended_at=row.call_ended_at,
                host_joined_at=row.host_joined_at,
                host_left_at=row.host_left_at,
                client_joined_at=row.client_joined_at,
                client_left_at=row.client_left_at,
            )
    return out


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def video_record(view: VideoLinkView | None) -> dict[str, Any]:
    """One video link as plain data (CLI ``--json`` and the API)."""
    if view is None:
        return {"provider": None, "status": "none", "link_status": "none", "error": None, "join_url": None}
    return {
        "provider": view.provider,
        "status": view.status,
        "link_status": view.link_status,
        "error": view.reason,
        "join_url": view.join_url,
        "meeting_id": view.meeting_id,
        "next_attempt_at": _iso(view.next_attempt_at),
        "call": {
            "started_at": _iso(view.call_started_at),
            "ended_at": _iso(view.call_ended_at),
            "host_joined_at": _iso(view.host_joined_at),
            "host_left_at": _iso(view.host_left_at),
            "client_joined_at": _iso(view.client_joined_at),
            "client_left_at": _iso(view.client_left_at),
        },
    }
