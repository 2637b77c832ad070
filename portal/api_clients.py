"""JSON API of clients and sessions (``/api/v1``): pseudonymous clients, sessions, assignments.

Names, e-mail addresses and phone numbers are in an answer only when the request asks with
``?reveal=true``, as the CLI prints them only with ``--show-names``: most screens (and logs of
whatever sits between) should make do with the client's code. Every query is scoped to the
signed-in therapist; another therapist's client, session or event is a 404 like an unknown one.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, NoReturn

from fastapi import APIRouter, HTTPException, Path, Query, Request

from core.attendance import CancellationView, who_cancelled
from core.clients import (
    AmbiguousEvent,
    ClientCodeTaken,
    ClientDetails,
    ClientsError,
    ClientView,
    InvalidClientData,
    OccurrenceNotFound,
    SeriesAssignmentView,
    SessionView,
    UnknownClient,
    UnknownEvent,
    UnknownSession,
    archive_client,
    assign_event,
    create_client,
    get_client,
    get_session,
    list_clients,
    list_sessions,
    set_session_modality,
    update_client,
)
from portal.audit_actor import actor_for
from portal.deps import CurrentTherapist, StoreDep
from portal.errors import ApiProblem
from portal.params import field_error, parse_instant, parse_occurrence_instant, window
from portal.schemas import (
    AssignmentCreate,
    AssignmentResult,
    ClientCreate,
    ClientDetailsPublic,
    ClientListQuery,
    ClientPublic,
    ClientUpdate,
    RevealQuery,
    SeriesAssignmentPublic,
    SessionPublic,
    SessionQuery,
    SessionUpdate,
)

__all__ = ["router"]

router = APIRouter(prefix="/api/v1")

ClientCode = Annotated[str, Path(min_length=1, max_length=40, description="The client's code, e.g. K7Q2.")]
SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The session's id (see the listing).")]
Reveal = Annotated[RevealQuery, Query()]

_NOT_FOUND = {
    UnknownClient: "No such client.",
    UnknownEvent: "No such event.",
    OccurrenceNotFound: "No such occurrence.",
    UnknownSession: "No such session.",
}


def _raise_for(exc: ClientsError) -> NoReturn:
    """Answer a core error as a problem; fixed texts, since core messages may quote a UID."""
    for kind, text in _NOT_FOUND.items():
        if isinstance(exc, kind):
            raise HTTPException(status_code=404, detail=text) from None
    if isinstance(exc, ClientCodeTaken):
        raise HTTPException(status_code=409, detail="That client code is already in use.") from None
    if isinstance(exc, InvalidClientData):
        # The core's messages name the rule, never the value (core.clients.service).
        raise field_error("body", exc.field or "body", str(exc)) from None
    if isinstance(exc, AmbiguousEvent):
        raise ApiProblem(
            409,
            "The event is in several of your connections; send 'connection' with one of them.",
            connections=list(exc.connections),
        ) from None
    # Archived client, erased details, no free code: the state forbids it, the request is fine.
    raise HTTPException(status_code=409, detail=str(exc)) from None


def _details(d: ClientDetails | None) -> ClientDetailsPublic | None:
    if d is None:
        return None
    return ClientDetailsPublic(
        name=d.name,
        email=d.email,
        phone=d.phone,
        timezone=d.timezone,
        modality=d.modality.value if d.modality else None,
        language=d.language,
    )


def _client_public(c: ClientView, reveal: bool) -> ClientPublic:
    return ClientPublic(
        id=c.id,
        code=c.code,
        archived=c.archived_at is not None,
        archived_at=c.archived_at,
        created_at=c.created_at,
        details=_details(c.details) if reveal else None,
        erased=c.erased if reveal else False,
    )


def _iso(value: datetime, all_day: bool) -> str:
    return value.date().isoformat() if all_day else value.astimezone(UTC).isoformat()


def _session_public(s: SessionView, reveal: bool, cancelled: CancellationView | None = None) -> SessionPublic:
    return SessionPublic(
        id=s.id,
        occurrence_id=s.occurrence_id,
        uid=s.uid,
        recurrence_id=s.recurrence_id or None,
        start=_iso(s.start, s.all_day),
        end=_iso(s.end, s.all_day),
        all_day=s.all_day,
        status=s.status.value,
        client=s.client_code,
        modality=s.modality.value,
        source=s.source.value,
        connection=s.connection,
        connection_id=s.connection_id,
        client_details=_details(s.client) if reveal else None,
        cancelled_by=cancelled.cancelled_by.value if cancelled else None,
        cancelled_late=cancelled.late if cancelled else None,
    )


def _series_public(a: SeriesAssignmentView) -> SeriesAssignmentPublic:
    return SeriesAssignmentPublic.model_validate(
        {
            "id": a.id,
            "uid": a.uid,
            "client": a.client_code,
            "connection_id": a.connection_id,
            "from": a.from_start,
            "sessions_assigned": a.sessions_assigned,
        }
    )


# -- clients ------------------------------------------------------------------------------------------


@router.get("/clients", tags=["clients"])
def clients(
    query: Annotated[ClientListQuery, Query()], request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> list[ClientPublic]:
    """Your clients by code."""
    actor = actor_for(request, therapist_id)
    views = list_clients(store, therapist_id, include_archived=query.archived, reveal=query.reveal, actor=actor)
    return [_client_public(c, query.reveal) for c in views]


@router.post(
    "/clients",
    status_code=201,
    tags=["clients"],
    responses={409: {"description": "The code asked for is already in use"}},
)
def create_client_route(
    body: ClientCreate, query: Reveal, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> ClientPublic:
    """Add a client; its code is random unless you send one. With an e-mail, events that have it
    among their attendees become its sessions."""
    try:
        view = create_client(
            store,
            therapist_id,
            name=body.name,
            email=body.email,
            phone=body.phone,
            timezone=body.timezone,
            modality=body.modality,
            language=body.language,
            code=body.code,
            actor=actor_for(request, therapist_id),
        )
    except ClientsError as exc:
        _raise_for(exc)
    return _client_public(view, query.reveal)


@router.get("/clients/{code}", tags=["clients"], responses={404: {"description": "No such client of yours"}})
def client(
    code: ClientCode, query: Reveal, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> ClientPublic:
    """One of your clients."""
    actor = actor_for(request, therapist_id)
    try:
        return _client_public(get_client(store, therapist_id, code, reveal=query.reveal, actor=actor), query.reveal)
    except ClientsError as exc:
        _raise_for(exc)


@router.patch(
    "/clients/{code}",
    tags=["clients"],
    responses={
        404: {"description": "No such client of yours"},
        409: {"description": "The client's details were erased"},
    },
)
def update_client_route(
    code: ClientCode,
    body: ClientUpdate,
    query: Reveal,
    request: Request,
    store: StoreDep,
    therapist_id: CurrentTherapist,
) -> ClientPublic:
    """Change some of a client's details (`null` clears one), and archive or restore it with `archived`."""
    sent = body.model_fields_set
    changes: dict[str, Any] = {
        field: getattr(body, field)
        for field in ("name", "email", "phone", "timezone", "modality", "language")
        if field in sent
    }
    actor = actor_for(request, therapist_id)
    try:
        if changes:
            update_client(store, therapist_id, code, **changes, actor=actor)
        if "archived" in sent and body.archived is not None:
            archive_client(store, therapist_id, code, archived=body.archived, actor=actor)
        return _client_public(get_client(store, therapist_id, code, reveal=query.reveal, actor=actor), query.reveal)
    except ClientsError as exc:
        _raise_for(exc)


# -- sessions -----------------------------------------------------------------------------------------


@router.get("/sessions", tags=["sessions"], responses={404: {"description": "No such client of yours"}})
def sessions(
    query: Annotated[SessionQuery, Query()], request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> list[SessionPublic]:
    """Your sessions overlapping ``[from, to)`` by start, cancelled ones too (see `status`).

    Sessions stay listed after their connection is removed: they are the record of the therapy.
    """
    first, last = window(query.start, query.end, default_days=None)
    try:
        views = list_sessions(
            store,
            therapist_id,
            start=first,
            end=last,
            client_code=query.client,
            reveal=query.reveal,
            actor=actor_for(request, therapist_id),
        )
    except ClientsError as exc:
        _raise_for(exc)
    cancelled = who_cancelled(store, views)
    return [_session_public(s, query.reveal, cancelled.get(s.id)) for s in views]


@router.get("/sessions/{session_id}", tags=["sessions"], responses={404: {"description": "No such session of yours"}})
def session(
    session_id: SessionId, query: Reveal, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> SessionPublic:
    """One of your sessions."""
    actor = actor_for(request, therapist_id)
    try:
        view = get_session(store, therapist_id, session_id, reveal=query.reveal, actor=actor)
        return _session_public(view, query.reveal, who_cancelled(store, [view]).get(view.id))
    except ClientsError as exc:
        _raise_for(exc)


@router.patch("/sessions/{session_id}", tags=["sessions"], responses={404: {"description": "No such session of yours"}})
def update_session(
    session_id: SessionId, body: SessionUpdate, store: StoreDep, therapist_id: CurrentTherapist
) -> SessionPublic:
    """Override the modality of one session."""
    try:
        return _session_public(set_session_modality(store, therapist_id, session_id, body.modality), False)
    except ClientsError as exc:
        _raise_for(exc)


@router.post(
    "/assignments",
    status_code=201,
    tags=["sessions"],
    responses={
        404: {"description": "No such client, event or occurrence of yours"},
        409: {"description": "The client is archived, or the UID is in several connections (`connections` lists them)"},
    },
)
def create_assignment(body: AssignmentCreate, store: StoreDep, therapist_id: CurrentTherapist) -> AssignmentResult:
    """Assign an event to a client, as `alliance assign` does: its series from `from` (default now)
    on, present and future instances, or only the `occurrence` with that original start or start.

    A single (non-recurring) event is always assigned as its one occurrence. Idempotent.
    """
    if body.occurrence is None and body.modality is not None:
        raise field_error("body", "modality", "applies to one 'occurrence'; a series takes the client's preference")
    if body.occurrence is not None and body.from_ is not None:
        raise field_error("body", "from", "applies to a series; send it or 'occurrence', not both")
    occurrence = parse_occurrence_instant(body.occurrence, "body", "occurrence") if body.occurrence else None
    from_start = parse_instant(body.from_, "body", "from") if body.from_ else None
    try:
        result = assign_event(
            store,
            therapist_id,
            body.uid,
            body.client,
            occurrence=occurrence,
            connection=body.connection,
            from_start=from_start,
            modality=body.modality,
        )
    except ClientsError as exc:
        _raise_for(exc)
    return AssignmentResult(
        session=_session_public(result.session, False) if result.session else None,
        series=_series_public(result.series) if result.series else None,
    )
