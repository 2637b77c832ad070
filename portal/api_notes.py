"""JSON API of session notes (``/api/v1/sessions/{id}/notes``): list, create, get, new version, sign.

Scoped to the signed-in therapist: another therapist's session or note is a 404 like an unknown
one, and psychotherapy (process) notes appear for their author only. Every call is audited by
``core.notes`` with the caller's address. Answers never echo note text in an error.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal, NoReturn

from fastapi import APIRouter, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from core.clients import ClientsError, UnknownClient
from core.crypto import MasterKeyError
from core.notes import (
    ClientErased,
    InvalidImport,
    InvalidNote,
    NewNote,
    NoteNotFound,
    NotesError,
    NoteSigned,
    NoteTooLarge,
    NoteUnreadable,
    NoteView,
    SessionNotFound,
    VersionConflict,
    add_version,
    create_note,
    export_client,
    export_html,
    get_note,
    import_notes,
    list_notes,
    sign_note,
)
from portal.audit_actor import actor_for
from portal.deps import CurrentTherapist, StoreDep
from portal.params import field_error

__all__ = ["NOTE_ERRORS", "actor_for", "raise_for_notes", "router"]

router = APIRouter(prefix="/api/v1", tags=["notes"])

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The session's id.")]
NoteId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The note's id (see the listing).")]
Kind = Literal["progress", "process"]
# Not blank, stated in the schema (search semantics: some non-space character) so that every
# request the schema accepts is one the core accepts; 64 KB is checked on the UTF-8 bytes (413).
_SOME_TEXT = r"\S"
MAX_BULK = 1000  # notes per bulk request (64 MB of text at most); larger imports: several requests


class NoteCreate(BaseModel):
    """A new note: Markdown text of at most 64 KB (UTF-8); larger is a 413."""

    kind: Kind = Field(default="progress", description="'progress' or 'process' (psychotherapy note, author only).")
    text: str = Field(pattern=_SOME_TEXT, description="Markdown text (not blank).")


class NoteVersionCreate(BaseModel):
    """The next version of a note's text; the earlier versions stay."""

    text: str = Field(pattern=_SOME_TEXT, description="Markdown text (not blank), at most 64 KB (UTF-8).")
    expected_version: int | None = Field(
        default=None, ge=1, le=2**31 - 1, description="The version the edit is based on; a stale one is a 409."
    )


class NoteVersionPublic(BaseModel):
    version: int
    created_at: datetime
    text: str


class NotePublic(BaseModel):
    id: int
    session_id: int
    kind: Kind
    version: int = Field(description="The current version.")
    text: str = Field(description="The current version's Markdown text.")
    created_at: datetime
    updated_at: datetime
    signed_at: datetime | None = Field(description="Set once the note is signed (locked).")
    signed: bool


class NoteDetail(NotePublic):
    history: list[NoteVersionPublic] = Field(description="Every version, oldest first.")


NOTE_ERRORS: dict[int | str, dict[str, str]] = {
    404: {"description": "No such session or note of yours"},
    409: {"description": "The note is signed, changed since you read it, or its stored text is unreadable"},
    410: {"description": "The client's data was erased"},
    413: {"description": "The note's text is larger than 64 KB"},
    503: {"description": "The master key does not match the data; notes are not served"},
}


def raise_for_notes(exc: NotesError | MasterKeyError) -> NoReturn:
    """Answer a core error as a problem with a fixed text."""
    if isinstance(exc, SessionNotFound):
        raise HTTPException(status_code=404, detail="No such session.") from None
    if isinstance(exc, NoteNotFound):
        raise HTTPException(status_code=404, detail="No such note.") from None
    if isinstance(exc, NoteTooLarge):
        raise HTTPException(status_code=413, detail="A note may hold at most 64 KB of text.") from None
    if isinstance(exc, InvalidNote):
        # A ValidationProblem naming the field, like every other 422 of the API.
        raise field_error("body", "text", str(exc).capitalize() + ".") from None
    if isinstance(exc, NoteSigned):
        raise HTTPException(status_code=409, detail="The note is signed and can no longer be changed.") from None
    if isinstance(exc, VersionConflict):
        raise HTTPException(status_code=409, detail=str(exc).capitalize() + ".") from None
    if isinstance(exc, NoteUnreadable):
        raise HTTPException(
            status_code=409,
            detail="A stored note cannot be decrypted (altered or moved in the database); this was audited.",
        ) from None
    if isinstance(exc, ClientErased):
        raise HTTPException(status_code=410, detail="This client's data was erased.") from None
    if isinstance(exc, MasterKeyError):
        raise HTTPException(status_code=503, detail="Notes are unavailable: the master key does not match.") from None
    raise HTTPException(status_code=400, detail="The note request cannot be done.") from None


def _public(view: NoteView) -> NotePublic:
    return NotePublic(
        id=view.id,
        session_id=view.session_id,
        kind=view.kind.value,
        version=view.version,
        text=view.text,
        created_at=view.created_at,
        updated_at=view.updated_at,
        signed_at=view.signed_at,
        signed=view.signed_at is not None,
    )


@router.get("/sessions/{session_id}/notes", responses=NOTE_ERRORS)
def notes(session_id: SessionId, request: Request, store: StoreDep, therapist_id: CurrentTherapist) -> list[NotePublic]:
    """The session's notes you may read, oldest first, each with its current text."""
    try:
        return [_public(v) for v in list_notes(store, actor_for(request, therapist_id), session_id)]
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)


@router.post("/sessions/{session_id}/notes", status_code=201, responses=NOTE_ERRORS)
def create(
    session_id: SessionId, body: NoteCreate, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> NotePublic:
    """Write a note (version 1) for one of your sessions."""
    try:
        return _public(create_note(store, actor_for(request, therapist_id), session_id, body.text, body.kind))
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)


@router.get("/sessions/{session_id}/notes/{note_id}", responses=NOTE_ERRORS)
def note(
    session_id: SessionId, note_id: NoteId, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> NoteDetail:
    """One note with every version."""
    try:
        view = get_note(store, actor_for(request, therapist_id), session_id, note_id)
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)
    history = [NoteVersionPublic(version=v.version, created_at=v.created_at, text=v.text) for v in view.history]
    return NoteDetail(**_public(view).model_dump(), history=history)


@router.post("/sessions/{session_id}/notes/{note_id}/versions", status_code=201, responses=NOTE_ERRORS)
def new_version(
    session_id: SessionId,
    note_id: NoteId,
    body: NoteVersionCreate,
    request: Request,
    store: StoreDep,
    therapist_id: CurrentTherapist,
) -> NotePublic:
    """Add the next version of a note (refused once it is signed)."""
    try:
        view = add_version(
            store,
            actor_for(request, therapist_id),
            session_id,
            note_id,
            body.text,
            expected_version=body.expected_version,
        )
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)
    return _public(view)


@router.post("/sessions/{session_id}/notes/{note_id}/sign", responses=NOTE_ERRORS)
def sign(
    session_id: SessionId, note_id: NoteId, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> NotePublic:
    """Sign (lock) a note; signing a signed note changes nothing."""
    try:
        return _public(sign_note(store, actor_for(request, therapist_id), session_id, note_id))
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)


class BulkNote(BaseModel):
    session_id: int = Field(ge=1, le=2**31 - 1, description="One of your sessions.")
    kind: Kind = Field(default="progress", description="'progress' or 'process' (psychotherapy note, author only).")
    text: str = Field(pattern=_SOME_TEXT, description="Markdown text (not blank), at most 64 KB (UTF-8).")


class BulkCreate(BaseModel):
    """Many new notes: all are written (one transaction, one audit entry each) or none."""

    notes: list[BulkNote] = Field(min_length=1, max_length=MAX_BULK, description=f"At most {MAX_BULK} notes.")


class BulkCreated(BaseModel):
    id: int
    session_id: int
    kind: Kind
    version: int = 1


@router.post(
    "/notes/bulk",
    status_code=201,
    responses={
        404: {"description": "An item names no session of yours (its position is given); nothing was written"},
        410: {"description": "An item is for an erased client; nothing was written"},
        413: {"description": "An item's text is larger than 64 KB; nothing was written"},
        503: NOTE_ERRORS[503],
    },
)
def bulk_create(
    body: BulkCreate, request: Request, store: StoreDep, therapist_id: CurrentTherapist
) -> list[BulkCreated]:
    """Write many notes at once (an import): each as ``POST .../notes`` would, or none at all."""
    items = [NewNote(n.session_id, n.text, n.kind) for n in body.notes]
    try:
        written = import_notes(store, actor_for(request, therapist_id), items)
    except InvalidImport as exc:
        status = {SessionNotFound: 404, ClientErased: 410, NoteTooLarge: 413}.get(type(exc.cause), 422)
        if status == 422:
            raise field_error("body", "notes", f"Note {exc.index}: {exc.cause}.") from None
        raise HTTPException(status_code=status, detail=f"Note {exc.index}: {exc.cause}; nothing was written.") from None
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)
    return [BulkCreated(id=n.id, session_id=n.session_id, kind=n.kind.value) for n in written]


ClientCode = Annotated[str, Path(min_length=1, max_length=40, description="The client's code, e.g. K7Q2.")]


class ExportRequest(BaseModel):
    """What to export. Psychotherapy notes are included only with a reason: a disclosure, recorded."""

    process_notes_reason: str | None = Field(
        default=None,
        max_length=500,
        pattern=_SOME_TEXT,
        description="Include psychotherapy notes, recording this reason for the disclosure.",
    )


@router.post(
    "/clients/{code}/export",
    tags=["notes"],
    responses={
        200: {"description": "The JSON bundle, or HTML with format=html", "content": {"text/html": {}}},
        404: {"description": "No such client of yours"},
        410: {"description": "The client's data was erased"},
    },
)
def export(
    code: ClientCode,
    body: ExportRequest,
    request: Request,
    store: StoreDep,
    therapist_id: CurrentTherapist,
    format: Annotated[Literal["json", "html"], Query(description="json (the bundle) or html (readable).")] = "json",
) -> Response:
    """Export a client's record: sessions, progress notes with every version, calendar history."""
    try:
        bundle = export_client(
            store,
            actor_for(request, therapist_id),
            code,
            include_process_notes=body.process_notes_reason is not None,
            reason=body.process_notes_reason,
        )
    except UnknownClient:
        raise HTTPException(status_code=404, detail="No such client.") from None
    except InvalidNote as exc:
        raise field_error("body", "process_notes_reason", str(exc).capitalize() + ".") from None
    except ClientsError:
        raise HTTPException(status_code=400, detail="The client cannot be exported.") from None
    except (NotesError, MasterKeyError) as exc:
        raise_for_notes(exc)
    headers = {"Cache-Control": "no-store"}
    if format == "html":
        return HTMLResponse(export_html(bundle), headers=headers)
    return JSONResponse(bundle, headers=headers)
