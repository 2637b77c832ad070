"""Domain events about sessions, written to the outbox in the transaction that changes the session.

Features that hang work off a session (video rooms, client e-mails, reminders) listen to these
and to the occurrence events of the session's occurrence. Payloads carry ids only: never a
client's name or anything else that could identify them.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.store.models import Connection, Occurrence, OutboxEvent

SESSION_ASSIGNED = "session.assigned"
"""An occurrence became a session, or its session moved to another client."""

SESSION_MODALITY_CHANGED = "session.modality_changed"
"""A session switched between online and in person."""

SESSION_KINDS = (SESSION_ASSIGNED, SESSION_MODALITY_CHANGED)


def emit_session_event(session: Session, kind: str, session_id: int, occ: Occurrence, **payload: object) -> None:
    """Queue ``kind`` for ``session_id`` in the caller's transaction (at-least-once to handlers)."""
    therapist_id = session.scalar(select(Connection.therapist_id).where(Connection.id == occ.connection_id))
    if therapist_id is None:  # pragma: no cover - an occurrence always has its connection
        raise LookupError(f"occurrence {occ.id} has no connection")
    session.add(
        OutboxEvent(
            kind=kind,
            therapist_id=therapist_id,
            connection_id=occ.connection_id,
            occurrence_id=occ.id,
            payload={"session_id": session_id, **payload},
        )
    )
