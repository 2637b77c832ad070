"""Record who cancelled a session, and read it back for the alert rules (R8).

A calendar says that an event was cancelled, never by whom. The therapist knows: they record it
in Alliance (``alliance sessions cancelled SESSION --by client [--late]``, or the API). Only a
cancelled session takes the record; restoring the session leaves the row unread. Log lines carry
session ids only.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from core.attendance.models import SessionCancellation
from core.clients import Client, SessionView, TherapySession, UnknownSession
from core.store.db import Store
from core.store.models import Occurrence
from core.sync.types import Status

log = logging.getLogger(__name__)


class CancelledBy(enum.StrEnum):
    CLIENT = "client"
    THERAPIST = "therapist"


class NotCancelled(ValueError):
    """The session's calendar event is not cancelled (sync first, or it was restored)."""


@dataclass(frozen=True, slots=True)
class CancellationView:
    session_id: int
    cancelled_by: CancelledBy
    late: bool
    recorded_at: datetime


def parse_cancelled_by(value: str) -> CancelledBy:
    try:
        return CancelledBy(value.strip().lower())
    except ValueError:
        raise ValueError("cancelled_by must be 'client' or 'therapist'") from None


def record_cancellation(
    store: Store,
    therapist_id: int,
    session_id: int,
    cancelled_by: str | CancelledBy,
    *,
    late: bool = False,
    now: datetime | None = None,
) -> CancellationView:
    """Say who cancelled one of this therapist's cancelled sessions (a later record replaces it).

    ``UnknownSession`` for another therapist's session or none, ``NotCancelled`` when its event is
    not cancelled, ``ValueError`` for anything but client/therapist. A therapist's cancellation is
    never late.
    """
    by = cancelled_by if isinstance(cancelled_by, CancelledBy) else parse_cancelled_by(cancelled_by)
    at = now or datetime.now(UTC)
    with store.session() as session:
        status = session.scalar(
            select(Occurrence.status)
            .join(TherapySession, TherapySession.occurrence_id == Occurrence.id)
            .join(Client, Client.id == TherapySession.client_id)
            .where(TherapySession.id == session_id, Client.therapist_id == therapist_id)
        )
        if status is None:
            raise UnknownSession(f"no session with id {session_id}")
        if status != Status.CANCELLED.value:
            raise NotCancelled(f"session {session_id} is not cancelled in its calendar (sync first)")
        row = session.get(SessionCancellation, session_id)
        if row is None:
            row = SessionCancellation(session_id=session_id)
            session.add(row)
        row.cancelled_by = by.value
        row.late = late and by is CancelledBy.CLIENT
        row.recorded_at = at
        view = CancellationView(session_id, by, row.late, at)
    log.info("session %d: cancellation recorded (by %s)", session_id, by.value)
    return view


def cancellations(store: Store, session_ids: Collection[int]) -> dict[int, CancellationView]:
    """The recorded cancellations of these sessions (callers scope the ids to one therapist)."""
    if not session_ids:
        return {}
    ids = list(session_ids)
    out: dict[int, CancellationView] = {}
    with store.session() as session:
        for start in range(0, len(ids), 500):
            for sid, by, late, at in session.execute(
                select(
                    SessionCancellation.session_id,
                    SessionCancellation.cancelled_by,
                    SessionCancellation.late,
                    SessionCancellation.recorded_at,
                ).where(SessionCancellation.session_id.in_(ids[start : start + 500]))
            ):
                out[sid] = CancellationView(sid, CancelledBy(by), late, at)
    return out


def who_cancelled(store: Store, sessions: Sequence[SessionView]) -> dict[int, CancellationView]:
    """For listings: the recorded cancellations of those of ``sessions`` that are cancelled now.

    A restored session keeps its row (a later cancel may reuse it) but shows none.
    """
    cancelled = [s.id for s in sessions if s.status is Status.CANCELLED]
    return cancellations(store, cancelled)


__all__ = [
    "CancellationView",
    "CancelledBy",
    "NotCancelled",
    "cancellations",
    "parse_cancelled_by",
    "record_cancellation",
    "who_cancelled",
]
