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

Series assignments follow too: an assignment of the series on the removed connection is carried
over to the live one (same client, same start), so instances synced after the reconnect become
the client's sessions as before, and the rules handler leaves an instance whose orphaned session
is waiting to be re-linked alone (``core.clients.apply_rules``) instead of competing with it.
"""

from __future__ import annotations

import logging

from sqlalchemy import bindparam, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from core.clients import apply_rules
from core.clients.models import Client, SeriesAssignment, TherapySession
from core.notes.models import Note
from core.store.db import Store
from core.store.models import Connection, Occurrence

log = logging.getLogger(__name__)


def _carry_series_assignments(session: Session, occ: Occurrence, therapist_id: int) -> int:
    """Copy assignments of ``occ``'s series on removed connections of this therapist to its live
    connection (each once); returns how many were copied."""
    old = session.scalars(
        select(SeriesAssignment)
        .join(Connection, Connection.id == SeriesAssignment.connection_id)
        .join(Client, Client.id == SeriesAssignment.client_id)
        .where(
            Connection.therapist_id == therapist_id,
            Client.therapist_id == therapist_id,
            Connection.removed_at.is_not(None),
            SeriesAssignment.ical_uid == occ.ical_uid,
        )
        .order_by(SeriesAssignment.from_start, SeriesAssignment.id)
    ).all()
    if not old:
        return 0
    present = {
        (a.client_id, a.from_start)
        for a in session.scalars(
            select(SeriesAssignment).where(
                SeriesAssignment.connection_id == occ.connection_id, SeriesAssignment.ical_uid == occ.ical_uid
            )
        )
    }
    carried = 0
    for assignment in old:
        if (assignment.client_id, assignment.from_start) in present:
            continue
        present.add((assignment.client_id, assignment.from_start))
        session.add(
            SeriesAssignment(
                connection_id=occ.connection_id,
                ical_uid=occ.ical_uid,
                client_id=assignment.client_id,
                from_start=assignment.from_start,
            )
        )
        carried += 1
    if carried:
        session.flush()
        log.info("connection %d: %d series assignment(s) carried over", occ.connection_id, carried)
    return carried


_REMOVED = aliased(Connection)
# Orphans and carried-over assignments both come from a removed connection of the therapist: most
# therapists never removed one, and every new occurrence of a first mirror asks (one statement).
_ANY_REMOVED_CONNECTION = (
    select(Occurrence.id)
    .join(Connection, Connection.id == Occurrence.connection_id)
    .where(
        Occurrence.id == bindparam("occurrence_id"),
        Connection.removed_at.is_(None),
        exists().where(_REMOVED.therapist_id == Connection.therapist_id, _REMOVED.removed_at.is_not(None)),
    )
)


def relink_orphaned_session(store: Store, occurrence_id: int) -> bool:
    """Move the orphaned session with this occurrence's identity onto it; True when one moved.

    Also carries its series' assignments over from the removed connection; when that added any,
    the series' instances on the live connection are matched against them again.
    """
    if not store.read_rows(_ANY_REMOVED_CONNECTION, {"occurrence_id": occurrence_id}):
        return False
    series: list[int] = []
    therapist_id = 0
    with store.session() as session:
        found = session.execute(
            select(Occurrence, Connection.therapist_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Occurrence.id == occurrence_id, Connection.removed_at.is_(None))
        ).first()
        if found is None:
            return False
        occ, therapist_id = found
        if _carry_series_assignments(session, occ, therapist_id):
            series = list(
                session.scalars(
                    select(Occurrence.id).where(
                        Occurrence.connection_id == occ.connection_id,
                        Occurrence.ical_uid == occ.ical_uid,
                        Occurrence.id != occ.id,
                    )
                )
            )
        # In the same transaction as the carry-over (one transaction, the occurrence read once);
        # a failure undoes both and the delivery's retry does both again.
        moved = _relink(session, occ, therapist_id)
    # After the move: this occurrence's own orphan has taken it; the others' orphans are left
    # alone by the rules (they wait for their own re-link).
    if series or moved:
        apply_rules(store, [occurrence_id, *series], therapist_id=therapist_id)
    return moved


def _relink(session: Session, occ: Occurrence, therapist_id: int) -> bool:
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
