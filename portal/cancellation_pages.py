"""The "who cancelled?" form on a cancelled session's checklist page (``POST /sessions/{id}/cancellation``).

A calendar says that a session was cancelled, never by whom; the therapist says it here (alert
rule R8 counts the client's cancellations). Plain form with the CSRF token, no JavaScript.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response

from core.attendance import NotCancelled, record_cancellation
from core.clients import UnknownSession
from portal.cookies import CSRF_FIELD, SESSION_COOKIE, check_csrf
from portal.deps import SignedInTherapist, StoreDep
from portal.errors import error_page
from portal.pages import TemplatesDep

router = APIRouter(include_in_schema=False)

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/sessions/{session_id}/cancellation")
async def save_cancellation(
    session_id: SessionId, request: Request, store: StoreDep, therapist_id: SignedInTherapist, templates: TemplatesDep
) -> Response:
    form = await request.form()
    check_csrf(request.cookies.get(SESSION_COOKIE), str(form.get(CSRF_FIELD) or "") or None)
    by = str(form.get("cancelled_by") or "")
    late = form.get("late") == "yes"
    try:
        record_cancellation(store, therapist_id, session_id, by, late=late)
    except UnknownSession:
        return error_page(templates, request, 404)
    except NotCancelled:
        return error_page(templates, request, 409)
    except ValueError:
        return error_page(templates, request, 422)
    return RedirectResponse(f"/sessions/{session_id}/checklists?saved=cancellation#cancellation", status_code=303)


__all__ = ["router"]
