"""``PUT /api/v1/sessions/{id}/cancellation``: who cancelled a cancelled session (alert rule R8).

A calendar says that an event was cancelled, never by whom; the therapist records it here (or
with ``alliance cancellation``). Another therapist's session is a 404 like a missing one; a session
whose event is not cancelled is a 409.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path
from pydantic import BaseModel, ConfigDict, Field

from core.attendance import NotCancelled, record_cancellation
from core.clients import UnknownSession
from portal.deps import CurrentTherapist, StoreDep

router = APIRouter(prefix="/api/v1", tags=["sessions"])

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The session's id (see the listing).")]


class CancellationIn(BaseModel):
    """Who cancelled the session."""

    model_config = ConfigDict(extra="forbid")

    cancelled_by: Literal["client", "therapist"]
    late: bool = Field(default=False, description="The client cancelled at short notice (ignored for the therapist).")


class CancellationOut(BaseModel):
    session_id: int
    cancelled_by: Literal["client", "therapist"]
    late: bool
    recorded_at: str


@router.put(
    "/sessions/{session_id}/cancellation",
    responses={404: {"description": "No such session of yours"}, 409: {"description": "The session is not cancelled"}},
)
def put_cancellation(
    session_id: SessionId, body: CancellationIn, store: StoreDep, therapist_id: CurrentTherapist
) -> CancellationOut:
    """Record who cancelled one of your cancelled sessions (a later record replaces it); the
    ratings view and rule R8 count the client's cancellations."""
    try:
        view = record_cancellation(store, therapist_id, session_id, body.cancelled_by, late=body.late)
    except UnknownSession:
        raise HTTPException(status_code=404, detail="No such session.") from None
    except NotCancelled:
        raise HTTPException(status_code=409, detail="This session is not cancelled in its calendar.") from None
    return CancellationOut(
        session_id=session_id,
        cancelled_by=view.cancelled_by.value,
        late=view.late,
        recorded_at=view.recorded_at.isoformat(),
    )


__all__ = ["router"]
