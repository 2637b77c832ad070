"""JSON API of therapist checklists: templates (``/api/v1/checklists/templates``) and runs per session
(``/api/v1/sessions/{id}/checklists``). Another therapist's session or template is a 404."""

from __future__ import annotations

from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, HTTPException, Path, Query

from core.checklists import (
    AnswerInput,
    ChecklistError,
    ChecklistItem,
    InvalidChecklist,
    OpenFlag,
    RunView,
    SessionCancelled,
    SessionChecklists,
    TemplateView,
    UnknownTemplate,
    get_template,
    list_templates,
    new_template_version,
    open_flags,
    parse_phase,
    record_answers,
    session_checklists,
)
from core.checklists.items import Applies, Response
from core.clients import UnknownSession
from portal.checklist_schemas import (
    AnswerPublic,
    AnswersCreate,
    ChecklistItemBody,
    FlagPublic,
    FlagQuery,
    ItemStatePublic,
    PhaseName,
    RunPublic,
    SessionChecklistsPublic,
    TemplateCreate,
    TemplatePublic,
    TemplateQuery,
)
from portal.deps import CurrentTherapist, StoreDep
from portal.params import field_error, window

__all__ = ["router"]

router = APIRouter(prefix="/api/v1", tags=["checklists"])

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The session's id.")]
TemplateId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The template's id (one version of a list).")]
PhasePath = Annotated[PhaseName, Path(description="pre (T items), start (S items) or post (P items).")]
_SESSION_404: dict[int | str, dict[str, Any]] = {404: {"description": "No such session of yours"}}


def _raise_for(exc: ChecklistError | InvalidChecklist | UnknownSession) -> NoReturn:
    if isinstance(exc, UnknownSession):
        raise HTTPException(status_code=404, detail="No such session.") from None
    if isinstance(exc, UnknownTemplate):
        raise HTTPException(status_code=404, detail="No such checklist template.") from None
    if isinstance(exc, InvalidChecklist):
        # Core messages name the rule and at most an item key, never a free text.
        raise field_error("body", exc.field or "body", str(exc)) from None
    if isinstance(exc, SessionCancelled):
        raise HTTPException(status_code=409, detail="This session was cancelled; its checklists are closed.") from None
    raise HTTPException(status_code=409, detail=str(exc)) from None


def item_body(item: ChecklistItem) -> ChecklistItemBody:
    return ChecklistItemBody.model_validate(item.to_json())


def template_public(view: TemplateView) -> TemplatePublic:
    return TemplatePublic(
        id=view.id,
        phase=view.phase.value,
        version=view.version,
        current=view.current,
        created_at=view.created_at,
        items=[item_body(i) for i in view.items],
    )


def run_public(run: RunView) -> RunPublic:
    return RunPublic(
        phase=run.phase.value,
        template_id=run.template.id,
        template_version=run.template.version,
        started=run.run_id is not None,
        started_by=run.started_by,
        started_at=run.started_at,
        updated_at=run.updated_at,
        complete=run.complete,
        items=[
            ItemStatePublic(
                item=item_body(state.item),
                answer=AnswerPublic(
                    status=state.answer.status.value,
                    text=state.answer.text,
                    reason=state.answer.reason,
                    answered_by=state.answer.answered_by,
                    answered_at=state.answer.answered_at,
                    erased=state.answer.erased,
                )
                if state.answer is not None
                else None,
            )
            for state in run.items
        ],
    )


def flag_public(flag: OpenFlag) -> FlagPublic:
    return FlagPublic(
        session_id=flag.session_id, phase=flag.phase.value, key=flag.key, text=flag.text, skipped=flag.skipped
    )


def checklists_public(found: SessionChecklists) -> SessionChecklistsPublic:
    return SessionChecklistsPublic(
        session_id=found.session.id,
        online=found.online,
        first_session=found.first_session,
        lists=[run_public(r) for r in found.runs],
        flags=[flag_public(f) for f in found.flags],
    )


# -- templates ----------------------------------------------------------------------------------------


@router.get("/checklists/templates")
def templates(
    query: Annotated[TemplateQuery, Query()], store: StoreDep, therapist_id: CurrentTherapist
) -> list[TemplatePublic]:
    """Your checklists: the current version of each list (version 1 is the reference's defaults)."""
    phase = parse_phase(query.phase) if query.phase else None
    views = list_templates(store, therapist_id, phase=phase, all_versions=query.all_versions)
    return [template_public(v) for v in views]


@router.get("/checklists/templates/{template_id}", responses={404: {"description": "No such template of yours"}})
def template(template_id: TemplateId, store: StoreDep, therapist_id: CurrentTherapist) -> TemplatePublic:
    """One version of one of your checklists."""
    try:
        return template_public(get_template(store, therapist_id, template_id))
    except ChecklistError as exc:
        _raise_for(exc)


@router.post("/checklists/templates", status_code=201)
def create_template(body: TemplateCreate, store: StoreDep, therapist_id: CurrentTherapist) -> TemplatePublic:
    """Save an edited list as its next version; runs already started keep the version they began with.

    Keep an item's key when you reword it. The session-start list keeps S2 (location and callback
    number): blocking, answered with a text.
    """
    items = [
        ChecklistItem(
            key=i.key,
            text=i.text,
            applies=Applies(i.applies),
            response=Response(i.response),
            sensitive=i.sensitive,
            blocking=i.blocking,
            refs=tuple(i.refs),
        )
        for i in body.items
    ]
    try:
        return template_public(new_template_version(store, therapist_id, body.phase, items))
    except (ChecklistError, InvalidChecklist) as exc:
        _raise_for(exc)


# -- runs ---------------------------------------------------------------------------------------------


@router.get("/checklists/flags")
def flags(query: Annotated[FlagQuery, Query()], store: StoreDep, therapist_id: CurrentTherapist) -> list[FlagPublic]:
    """Open flags of your sessions that are not cancelled (those overlapping ``[from, to)`` if given):
    blocking items (S2 on online sessions) not done yet."""
    first, last = window(query.start, query.end, default_days=None)
    found = open_flags(store, therapist_id, start=first, end=last)
    return [flag_public(f) for session_id in sorted(found) for f in found[session_id]]


@router.get("/sessions/{session_id}/checklists", responses=_SESSION_404)
def session_lists(session_id: SessionId, store: StoreDep, therapist_id: CurrentTherapist) -> SessionChecklistsPublic:
    """The three lists of one of your sessions (only the items that apply to it), answers and open flags."""
    try:
        return checklists_public(session_checklists(store, therapist_id, session_id))
    except UnknownSession as exc:
        _raise_for(exc)


@router.get("/sessions/{session_id}/checklists/{phase}", responses=_SESSION_404)
def session_list(session_id: SessionId, phase: PhasePath, store: StoreDep, therapist_id: CurrentTherapist) -> RunPublic:
    """One list of one of your sessions."""
    try:
        return run_public(session_checklists(store, therapist_id, session_id).run(parse_phase(phase)))
    except UnknownSession as exc:
        _raise_for(exc)


@router.post(
    "/sessions/{session_id}/checklists/{phase}",
    responses={**_SESSION_404, 409: {"description": "The session was cancelled"}},
)
def answer(
    session_id: SessionId, phase: PhasePath, body: AnswersCreate, store: StoreDep, therapist_id: CurrentTherapist
) -> RunPublic:
    """Record answers to one list of a session; all or some items at a time, nothing stored if one is invalid."""
    answers = [AnswerInput(a.key, a.status, a.text, a.reason) for a in body.answers]
    try:
        return run_public(record_answers(store, therapist_id, session_id, phase, answers))
    except (ChecklistError, InvalidChecklist, UnknownSession) as exc:
        _raise_for(exc)
