"""JSON API of sessions' video links (``/api/v1/sessions/{id}/video``): status, reason, retry.

Scoped like every API route: another therapist's session is a 404 like an unknown one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, Field

from alliance.video import provider_factory, video_config
from core.clients import ClientsError, get_session
from core.video.service import retry_session
from core.video.views import video_links, video_record
from portal.deps import CurrentTherapist, SettingsDep, StoreDep

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["video"])

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The session's id (see the listing).")]


class CallTimes(BaseModel):
    started_at: datetime | None
    ended_at: datetime | None
    host_joined_at: datetime | None
    host_left_at: datetime | None
    client_joined_at: datetime | None
    client_left_at: datetime | None


class VideoLinkPublic(BaseModel):
    provider: str | None = Field(description="`zoom` (made by Alliance), `external` (the event's own link) or null.")
    status: str = Field(description="none, later, pending, deferred, active or missing.")
    link_status: str = Field(description="`ok`, `pending`, `missing` or `none`.")
    error: str | None = Field(description="Why the link is missing or pending (no client data).")
    join_url: str | None
    meeting_id: str | None = None
    next_attempt_at: datetime | None = None
    call: CallTimes | None = None


class RetryResult(BaseModel):
    outcome: str
    video: VideoLinkPublic


def _own(store: StoreDep, therapist_id: int, session_id: int) -> None:
    try:
        get_session(store, therapist_id, session_id)
    except ClientsError:
        raise HTTPException(status_code=404, detail="No such session.") from None


@router.get("/sessions/{session_id}/video", responses={404: {"description": "No such session of yours"}})
def video(session_id: SessionId, store: StoreDep, therapist_id: CurrentTherapist) -> VideoLinkPublic:
    """The session's video link: provider, status, the reason when it is missing, the real call times."""
    _own(store, therapist_id, session_id)
    record = video_record(video_links(store, therapist_id, [session_id]).get(session_id))
    return VideoLinkPublic.model_validate(record)


@router.post("/sessions/{session_id}/video/retry", responses={404: {"description": "No such session of yours"}})
def retry(session_id: SessionId, store: StoreDep, settings: SettingsDep, therapist_id: CurrentTherapist) -> RetryResult:
    """Provision the session's video link again now (after "missing")."""
    _own(store, therapist_id, session_id)
    outcome = retry_session(store, therapist_id, session_id, provider_factory(settings), video_config(settings))
    record = video_record(video_links(store, therapist_id, [session_id]).get(session_id))
    return RetryResult(outcome=outcome, video=VideoLinkPublic.model_validate(record))
