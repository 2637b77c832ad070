"""The parts of a client export that other features hold: ratings and checklist answers.

Registered with :func:`core.notes.register_export_section` when ``core.notes`` is imported, so
every export (CLI and API) carries them (issue 8: "sessions, progress notes, ratings, checklist
answers, history"). Answers of checklist items marked ``sensitive`` (health or location data the
checklists keep to the treating therapist) are exported with their status, not their text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from core.checklists import session_checklists
from core.notes.export import ExportScope, register_export_section
from core.ratings import list_client_ratings, read_comment
from core.store.db import Store


def _iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat() if value else None


def ratings_section(store: Store, scope: ExportScope) -> list[dict[str, Any]]:
    """Every rating the client gave, with the comment (decrypted), oldest first."""
    return [
        {
            "session_id": r.session_id,
            "measure": r.measure,
            "submitted_at": _iso(r.submitted_at),
            "bond": r.bond,
            "goals": r.goals,
            "approach": r.approach,
            "overall": r.overall,
            "total": r.total,
            "comment": read_comment(store, r),
        }
        for r in list_client_ratings(store, scope.therapist_id, scope.client_id)
    ]


def checklists_section(store: Store, scope: ExportScope) -> list[dict[str, Any]]:
    """The answered checklist items of each of the client's sessions."""
    out: list[dict[str, Any]] = []
    for session_id in scope.session_ids:
        lists = session_checklists(store, scope.therapist_id, session_id)
        for run in lists.runs:
            answers = [
                {
                    "key": state.item.key,
                    "item": state.item.text,
                    "status": str(state.answer.status.value),
                    "text": None if state.item.sensitive else state.answer.text,
                    "reason": None if state.item.sensitive else state.answer.reason,
                    "answered_at": _iso(state.answer.answered_at),
                }
                for state in run.items
                if state.answer is not None
            ]
            if answers:
                out.append({"session_id": session_id, "phase": run.phase.value, "answers": answers})
    return out


register_export_section("ratings", ratings_section)
register_export_section("checklists", checklists_section)

__all__ = ["checklists_section", "ratings_section"]
