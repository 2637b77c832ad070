"""Re-linking sessions left behind by a removed connection when the same calendar comes back.

Removing a connection keeps its occurrences and their sessions (``core.mirror.remove_connection``):
the notes stay, shown as "event removed from calendar". Connecting the same calendar again (or
the same events from another provider: a move from Google to Outlook keeps iCalUIDs) mirrors the
events as new occurrences of the new connection. An occurrence's identity is
``(iCalUID, original start)`` within a therapist's calendars, so a new occurrence with the
identity of an orphaned session's occurrence takes that session over: the session row (and all
that hangs off it) moves to the live occurrence.

The rules handler may have made the new occurrence a session already (handlers of one outbox event
run in any order). That session is seconds old; when nothing hangs off it, it gives way to the
orphan. When something does (a foreign key refuses the delete, or it has notes), both stay and
the therapist sees the old one as "event removed".
"""

from __future__ import annotations

import logging

from sqlalchemy import delete, exists, select
from sqlalchemy.exc import IntegrityError

from core.clients.models import Client, TherapySession
from core.notes.models import Note
from core.store.db import Store
from core.store.models import Connection, Occurrence

log = logging.getLogger(__name__)


def relink_orphaned_session(store: Store, occurrence_id: int) -> bool:
    """Move the orphaned session with this occurrence's identity onto it; True when one moved."""
    with store.session() as session:
        row = session.execute(
            select(Occurrence, Connection.therapist_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Occurrence.id == occurrence_id, Connection.removed_at.is_(None))
        ).first()
        if row is None:
            return False
        occ, therapist_id = row
        orphan = session.scalar(
            select(TherapySession)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .join(Client, Client.id == TherapySession.client_id)
            .where(
                Connection.therapist_id == therapist_id,
                Client.therapist_id == therapist_id,
                Connection.removed_at.is_not(None),
                Occurrence.ical_uid == occ.ical_uid,
                Occurrence.recurrence_id == occ.recurrence_id,
            )
            .order_by(Connection.removed_at.desc(), TherapySession.id.desc())
            .limit(1)
        )
        if orphan is None:
            return False
        current = session.scalar(select(TherapySession).where(TherapySession.occurrence_id == occ.id))
        if current is not None:
            has_notes = session.scalar(select(exists().where(Note.session_id == current.id)))
            if has_notes:
                log.info("occurrence %d: session %d has notes; orphan %d stays", occ.id, current.id, orphan.id)
                return False
            try:
                with session.begin_nested():
                    session.execute(delete(TherapySession).where(TherapySession.id == current.id))
            except IntegrityError:
                log.info("occurrence %d: session %d is in use; orphan %d stays", occ.id, current.id, orphan.id)
                return False
        orphan.occurrence_id = occ.id
        session.flush()
        log.info("session %d re-linked to occurrence %d", orphan.id, occ.id)
        return True


__all__ = ["relink_orphaned_session"]
