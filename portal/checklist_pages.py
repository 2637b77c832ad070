"""Server-rendered checklist pages of a session for the signed-in therapist (``/sessions/{id}/checklists``).

Plain forms, no JavaScript: one form per list, a radio group per item (open / done / skipped), a
text field where the item needs one and a reason field for skipping. Only answers that changed are
recorded, so saving a list twice does not stack identical answers.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from starlette.datastructures import FormData

from core.accounts import get_therapist
from core.attendance import cancellations
from core.checklists import (
    AnswerInput,
    AnswerStatus,
    InvalidChecklist,
    Phase,
    SessionCancelled,
    SessionChecklists,
    record_answers,
    session_checklists,
)
from core.clients import UnknownSession
from portal.cookies import CSRF_FIELD, SESSION_COOKIE, check_csrf, csrf_token_for
from portal.deps import SignedInTherapist, StoreDep
from portal.errors import error_page
from portal.pages import TemplatesDep

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1)]

TITLES = {
    Phase.PRE: "Before the session",
    Phase.START: "At the start of the session",
    Phase.POST: "After the session",
}
_SAVED = {phase.value: f"{title}: saved." for phase, title in TITLES.items()}
_SAVED["cancellation"] = "Who cancelled: saved."


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:] + ("" if message.endswith(".") else ".")


def _page(
    request: Request,
    templates: TemplatesDep,
    store: StoreDep,
    therapist_id: int,
    found: SessionChecklists,
    *,
    status_code: int = 200,
    error: str | None = None,
    error_phase: Phase | None = None,
    submitted: dict[str, dict[str, str]] | None = None,
) -> Response:
    therapist = get_therapist(store, therapist_id)
    zone = ZoneInfo(therapist.timezone)
    secret = request.cookies.get(SESSION_COOKIE, "")
    saved = request.query_params.get("saved")
    context: dict[str, Any] = {
        "found": found,
        "start": found.session.start.astimezone(zone),
        "zone": therapist.timezone,
        "titles": TITLES,
        "notice": _SAVED.get(saved or ""),
        "error": error,
        "error_phase": error_phase.value if error_phase else None,
        "submitted": submitted or {},
        "csrf_token": csrf_token_for(secret),
        "signed_in": True,
        "cancelled": found.session.status.value == "cancelled",
        # Who cancelled (portal.cancellation_pages; alert rule R8): read only for a cancelled session.
        "cancellation": cancellations(store, [found.session.id]).get(found.session.id),
    }
    return templates.TemplateResponse(request, "checklists.html", context, status_code=status_code)


@router.get("/sessions/{session_id}/checklists")
def checklists_page(
    session_id: SessionId, request: Request, store: StoreDep, therapist_id: SignedInTherapist, templates: TemplatesDep
) -> Response:
    try:
        found = session_checklists(store, therapist_id, session_id)
    except UnknownSession:
        return error_page(templates, request, 404)
    return _page(request, templates, store, therapist_id, found)


def _submitted(form: FormData, keys: list[str]) -> dict[str, dict[str, str]]:
    """What the form says per item key: status ('' = open), text, reason."""
    values: dict[str, dict[str, str]] = {}
    for key in keys:
        values[key] = {
            "status": str(form.get(f"status.{key}") or ""),
            "text": str(form.get(f"text.{key}") or "").strip(),
            "reason": str(form.get(f"reason.{key}") or "").strip(),
        }
    return values


@router.post("/sessions/{session_id}/checklists/{phase}")
async def save_checklist(
    session_id: SessionId,
    phase: str,
    request: Request,
    store: StoreDep,
    therapist_id: SignedInTherapist,
    templates: TemplatesDep,
) -> Response:
    form = await request.form()
    check_csrf(request.cookies.get(SESSION_COOKIE), str(form.get(CSRF_FIELD) or "") or None)
    try:
        chosen = Phase(phase)
        found = session_checklists(store, therapist_id, session_id)
    except (ValueError, UnknownSession):
        return error_page(templates, request, 404)
    run = found.run(chosen)
    submitted = _submitted(form, [s.item.key for s in run.items])
    changed: list[AnswerInput] = []
    for state in run.items:
        sent = submitted[state.item.key]
        if sent["status"] not in (AnswerStatus.DONE.value, AnswerStatus.SKIPPED.value):
            continue  # left open (an answer cannot be taken back, only changed)
        current = state.answer
        text = sent["text"] or None
        reason = (sent["reason"] or None) if sent["status"] == AnswerStatus.SKIPPED.value else None
        if (
            current is not None
            and current.status.value == sent["status"]
            and current.text == text
            and current.reason == reason
        ):
            continue
        changed.append(AnswerInput(state.item.key, sent["status"], text, reason))
    if changed:
        try:
            record_answers(store, therapist_id, session_id, chosen, changed)
        except InvalidChecklist as exc:
            return _page(
                request,
                templates,
                store,
                therapist_id,
                found,
                status_code=422,
                error=_sentence(str(exc)),
                error_phase=chosen,
                submitted=submitted,
            )
        except SessionCancelled:
            return _page(
                request,
                templates,
                store,
                therapist_id,
                found,
                status_code=409,
                error="This session was cancelled; its checklists are closed.",
                error_phase=chosen,
            )
    return RedirectResponse(
        f"/sessions/{session_id}/checklists?saved={chosen.value}#list-{chosen.value}", status_code=303
    )
