"""Therapist pages of session notes: ``/sessions/{id}/notes`` with a plain server-rendered editor.

Forms carry the session's CSRF token like every other form; after a successful post the browser
is redirected back (post/redirect/get), so a reload never writes a note twice. Markdown is
rendered with raw HTML disabled, so a note can never inject markup into the page.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Path, Request
from fastapi.responses import RedirectResponse, Response
from markdown_it import MarkdownIt
from markupsafe import Markup

from core.crypto import MasterKeyError
from core.notes import (
    ClientErased,
    NoteNotFound,
    NotesError,
    NoteSigned,
    NoteTooLarge,
    NoteUnreadable,
    SessionNotFound,
    VersionConflict,
    add_version,
    create_note,
    list_notes,
    session_ref,
    sign_note,
)
from portal.audit_actor import actor_for
from portal.cookies import SESSION_COOKIE, check_csrf, csrf_token_for
from portal.deps import SignedInTherapist, StoreDep
from portal.errors import error_page
from portal.pages import TemplatesDep

__all__ = ["render_markdown", "router"]

router = APIRouter(include_in_schema=False)

SessionId = Annotated[int, Path(ge=1, le=2**31 - 1)]
NoteId = Annotated[int, Path(ge=1, le=2**31 - 1)]
FormField = Annotated[str | None, Form()]

# "commonmark" with html=False: raw HTML in a note is shown as text; markdown-it also refuses
# javascript:/vbscript:/data: link targets by default.
_markdown = MarkdownIt("commonmark", {"html": False})


def render_markdown(text: str) -> Markup:
    """A note's Markdown as safe HTML."""
    return Markup(_markdown.render(text))  # html disabled above: no raw markup passes


def _page(
    request: Request,
    store: StoreDep,
    therapist_id: int,
    templates: TemplatesDep,
    session_id: int,
    *,
    error: str | None = None,
    status_code: int = 200,
    draft: dict[str, Any] | None = None,
) -> Response:
    actor = actor_for(request, therapist_id, "page")
    try:
        ref = session_ref(store, actor, session_id)
    except SessionNotFound:
        return error_page(templates, request, 404)
    notes = []
    unreadable = None
    try:
        notes = list_notes(store, actor, session_id, history=True)
    except NoteUnreadable:
        unreadable = "A stored note cannot be decrypted (it was altered or moved in the database). This was recorded."
    except ClientErased:
        unreadable = "This client's data was erased; their notes are gone."
    except MasterKeyError:
        unreadable = "Notes are unavailable: the master key does not match the data."
    secret = request.cookies.get(SESSION_COOKIE, "")
    context = {
        "session": ref,
        "notes": [
            {
                "view": n,
                "html": render_markdown(n.text),
                "earlier": [(v, render_markdown(v.text)) for v in reversed(n.history) if v.version != n.version],
            }
            for n in notes
        ],
        "unreadable": unreadable,
        "error": error,
        "draft": draft or {},
        "csrf_token": csrf_token_for(secret),
        "signed_in": True,
    }
    return templates.TemplateResponse(request, "notes.html", context, status_code=status_code)


def _back(session_id: int, anchor: str = "") -> Response:
    return RedirectResponse(f"/sessions/{session_id}/notes{anchor}", status_code=303)


def _write_error(exc: NotesError | MasterKeyError) -> tuple[str, int]:
    if isinstance(exc, NoteTooLarge):
        return "A note may hold at most 64 KB of text. Nothing was saved.", 413
    if isinstance(exc, NoteSigned):
        return "That note is signed and can no longer be changed.", 409
    if isinstance(exc, VersionConflict):
        return "That note changed since you opened it. Reload the page and edit the newest version.", 409
    if isinstance(exc, ClientErased):
        return "This client's data was erased; no notes can be written for them.", 410
    if isinstance(exc, MasterKeyError):
        return "Notes are unavailable: the master key does not match the data.", 503
    return str(exc).capitalize() + ". Nothing was saved.", 422


@router.get("/sessions/{session_id}/notes")
def notes_page(
    session_id: SessionId, request: Request, store: StoreDep, therapist_id: SignedInTherapist, templates: TemplatesDep
) -> Response:
    return _page(request, store, therapist_id, templates, session_id)


@router.post("/sessions/{session_id}/notes")
def create_from_form(
    session_id: SessionId,
    request: Request,
    store: StoreDep,
    therapist_id: SignedInTherapist,
    templates: TemplatesDep,
    text: FormField = None,
    kind: FormField = None,
    csrf_token: FormField = None,
) -> Response:
    check_csrf(request.cookies.get(SESSION_COOKIE), csrf_token)
    try:
        view = create_note(store, actor_for(request, therapist_id, "page"), session_id, text or "", kind or "progress")
    except (SessionNotFound, NoteNotFound):
        return error_page(templates, request, 404)
    except (NotesError, MasterKeyError) as exc:
        message, status = _write_error(exc)
        draft = {"new": text or "", "kind": kind or "progress"}
        return _page(
            request, store, therapist_id, templates, session_id, error=message, status_code=status, draft=draft
        )
    return _back(session_id, f"#note-{view.id}")


@router.post("/sessions/{session_id}/notes/{note_id}/versions")
def version_from_form(
    session_id: SessionId,
    note_id: NoteId,
    request: Request,
    store: StoreDep,
    therapist_id: SignedInTherapist,
    templates: TemplatesDep,
    text: FormField = None,
    expected_version: FormField = None,
    csrf_token: FormField = None,
) -> Response:
    check_csrf(request.cookies.get(SESSION_COOKIE), csrf_token)
    expected = int(expected_version) if expected_version and expected_version.isdigit() else None
    try:
        add_version(
            store, actor_for(request, therapist_id, "page"), session_id, note_id, text or "", expected_version=expected
        )
    except (SessionNotFound, NoteNotFound):
        return error_page(templates, request, 404)
    except (NotesError, MasterKeyError) as exc:
        message, status = _write_error(exc)
        draft = {f"note-{note_id}": text or ""}
        return _page(
            request, store, therapist_id, templates, session_id, error=message, status_code=status, draft=draft
        )
    return _back(session_id, f"#note-{note_id}")


@router.post("/sessions/{session_id}/notes/{note_id}/sign")
def sign_from_form(
    session_id: SessionId,
    note_id: NoteId,
    request: Request,
    store: StoreDep,
    therapist_id: SignedInTherapist,
    templates: TemplatesDep,
    csrf_token: FormField = None,
) -> Response:
    check_csrf(request.cookies.get(SESSION_COOKIE), csrf_token)
    try:
        sign_note(store, actor_for(request, therapist_id, "page"), session_id, note_id)
    except (SessionNotFound, NoteNotFound):
        return error_page(templates, request, 404)
    except (NotesError, MasterKeyError) as exc:
        message, status = _write_error(exc)
        return _page(request, store, therapist_id, templates, session_id, error=message, status_code=status)
    return _back(session_id, f"#note-{note_id}")
