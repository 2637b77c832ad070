"""Export of one client's record (GDPR Art. 15/20, HIPAA access): a JSON bundle and readable HTML.

The bundle holds the client's details, every session with its calendar history and progress
notes with all versions. Psychotherapy (process) notes are left out unless the caller asks for
them with a reason; that is a disclosure, stored (reason encrypted) and audited.

Other features add their part through :func:`register_export_section` (ratings, checklist
answers...): a section is a function of the store and an :class:`ExportScope` returning JSON data;
it appears under ``bundle["sections"][name]``.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from core.audit import Actor, record
from core.clients import get_client, list_sessions
from core.crypto import Owner
from core.mirror import occurrence_history
from core.notes.models import NoteDisclosure, NoteKind
from core.notes.service import ClientErased, InvalidNote, NoteView, list_client_notes, session_ref
from core.store.db import Store

log = logging.getLogger(__name__)

FORMAT = "alliance.client-export"
FORMAT_VERSION = 1
MAX_REASON = 500


@dataclass(frozen=True, slots=True)
class ExportScope:
    """What a section may export: this client of this therapist, and these sessions."""

    therapist_id: int
    client_id: int
    client_code: str
    session_ids: tuple[int, ...]


ExportSection = Callable[[Store, ExportScope], Any]
_SECTIONS: dict[str, ExportSection] = {}


def register_export_section(name: str, section: ExportSection) -> None:
    """Add a named part to every export (e.g. ``"ratings"``); names are unique."""
    if not name.isidentifier():
        raise ValueError(f"export section name {name!r} must be an identifier")
    if name in _SECTIONS and _SECTIONS[name] is not section:
        raise ValueError(f"export section {name!r} is already registered")
    _SECTIONS[name] = section


def export_sections() -> dict[str, ExportSection]:
    return dict(_SECTIONS)


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def _note_json(n: NoteView) -> dict[str, Any]:
    return {
        "id": n.id,
        "kind": n.kind.value,
        "created_at": _iso(n.created_at),
        "signed_at": _iso(n.signed_at),
        "current_version": n.version,
        "versions": [{"version": v.version, "created_at": _iso(v.created_at), "text": v.text} for v in n.history],
    }


def export_client(
    store: Store,
    actor: Actor,
    code: str,
    *,
    include_process_notes: bool = False,
    reason: str | None = None,
) -> dict[str, Any]:
    """The JSON bundle of one client of this therapist (see the module docstring)."""
    if actor.therapist_id is None:
        raise ClientErased("exports are made by the client's therapist")
    therapist_id = actor.therapist_id
    clean_reason = (reason or "").strip()
    if include_process_notes and not clean_reason:
        raise InvalidNote("psychotherapy notes are exported only with a reason for the disclosure")
    if len(clean_reason) > MAX_REASON:
        raise InvalidNote(f"a disclosure reason has at most {MAX_REASON} characters")
    client = get_client(store, therapist_id, code, reveal=True)
    if client.erased or client.details is None:
        raise ClientErased("this client's data was erased; there is nothing left to export")
    kinds = (NoteKind.PROGRESS, NoteKind.PROCESS) if include_process_notes else (NoteKind.PROGRESS,)
    notes = list_client_notes(store, actor, client.id, kinds=kinds, history=True)
    sessions = list_sessions(store, therapist_id, client_code=client.code)
    by_session: dict[int, list[NoteView]] = {}
    for n in notes:
        by_session.setdefault(n.session_id, []).append(n)

    session_rows = []
    for s in sessions:
        ref = session_ref(store, actor, s.id)
        session_rows.append(
            {
                "id": s.id,
                "start": _iso(s.start),
                "end": _iso(s.end),
                "all_day": s.all_day,
                "status": s.status.value,
                "modality": s.modality.value,
                "event_removed": ref.event_removed,
                "history": [
                    {
                        "kind": h.kind,
                        "old_start": _iso(h.old_start),
                        "old_end": _iso(h.old_end),
                        "new_start": _iso(h.new_start),
                        "new_end": _iso(h.new_end),
                        "at": _iso(h.at),
                    }
                    for h in occurrence_history(store, s.occurrence_id)
                ],
                "notes": [_note_json(n) for n in by_session.pop(s.id, [])],
            }
        )
    # Notes of sessions that moved to another client since: still this client's record.
    orphans = [_note_json(n) for rest in by_session.values() for n in rest]
    scope = ExportScope(therapist_id, client.id, client.code, tuple(s.id for s in sessions))
    details = client.details
    bundle: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "exported_at": _iso(datetime.now(UTC)),
        "client": {
            "code": client.code,
            "name": details.name,
            "email": details.email,
            "phone": details.phone,
            "timezone": details.timezone,
            "preferred_modality": details.modality.value if details.modality else None,
            "created_at": _iso(client.created_at),
        },
        "sessions": session_rows,
        "other_notes": orphans,
        "includes_process_notes": include_process_notes,
        "sections": {name: section(store, scope) for name, section in sorted(_SECTIONS.items())},
    }
    process_ids = [n.id for n in notes if n.kind is NoteKind.PROCESS]
    with store.session() as session:
        if include_process_notes:
            cipher = store.keyring.cipher(session, Owner("therapist", therapist_id))
            disclosure = NoteDisclosure(
                therapist_id=therapist_id, client_id=client.id, note_ids=process_ids, reason=b""
            )
            session.add(disclosure)
            session.flush()
            disclosure.reason = cipher.encrypt_text(
                clean_reason, f"note_disclosures.reason|{disclosure.id}|{therapist_id}"
            )
            record(
                session,
                actor,
                "disclose",
                "client",
                client.id,
                client_id=client.id,
                detail={"disclosure_id": disclosure.id, "note_ids": process_ids},
            )
            bundle["disclosure"] = {"id": disclosure.id, "reason": clean_reason, "note_ids": process_ids}
        record(
            session,
            actor,
            "export",
            "client",
            client.id,
            client_id=client.id,
            detail={"sessions": len(session_rows), "notes": len(notes), "process_notes": include_process_notes},
        )
    log.info("client %d exported (%d sessions, %d notes)", client.id, len(session_rows), len(notes))
    return bundle


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def export_html(bundle: dict[str, Any]) -> str:
    """A self-contained, readable HTML page of a bundle (no scripts, no external assets)."""
    client = bundle["client"]
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Record of {_e(client['code'])}</title>",
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem}"
        "pre{white-space:pre-wrap;background:#f5f7fa;padding:.75rem;border-radius:4px}"
        "section{border-top:1px solid #d9e2ec;margin-top:1.5rem}</style></head><body>",
        f"<h1>Record of {_e(client['code'])}</h1>",
        f"<p>Exported {_e(bundle['exported_at'])}.</p>",
        "<dl>",
    ]
    for label, key in (("Name", "name"), ("E-mail", "email"), ("Phone", "phone"), ("Time zone", "timezone")):
        parts.append(f"<dt>{label}</dt><dd>{_e(client.get(key)) or '—'}</dd>")
    parts.append("</dl>")
    if "disclosure" in bundle:
        parts.append(
            f"<p><strong>Includes psychotherapy notes.</strong> Reason: {_e(bundle['disclosure']['reason'])}</p>"
        )
    for s in bundle["sessions"]:
        removed = " · event removed from calendar" if s["event_removed"] else ""
        parts.append(f"<section><h2>Session {_e(s['start'])} ({_e(s['status'])}{removed})</h2>")
        if s["history"]:
            parts.append("<ul>")
            for h in s["history"]:
                parts.append(f"<li>{_e(h['at'])}: {_e(h['kind'])} {_e(h['new_start'] or '')}</li>")
            parts.append("</ul>")
        for n in s["notes"]:
            label = "Psychotherapy note" if n["kind"] == "process" else "Progress note"
            signed = f", signed {_e(n['signed_at'])}" if n["signed_at"] else ""
            parts.append(f"<h3>{label} {_e(n['id'])}{signed}</h3>")
            for v in n["versions"]:
                parts.append(f"<p>Version {_e(v['version'])}, {_e(v['created_at'])}</p><pre>{_e(v['text'])}</pre>")
        parts.append("</section>")
    for name, data in bundle.get("sections", {}).items():
        parts.append(f"<section><h2>{_e(name)}</h2><pre>{_e(data)}</pre></section>")
    parts.append("</body></html>")
    return "".join(parts)
