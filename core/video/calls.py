"""What the call really did: provider call events stored once, applied by the worker.

The webhook endpoint calls :func:`record_call_event` (one INSERT, duplicates ignored) and answers;
the worker's :func:`apply_call_events` then records real start/end and join/leave times (roles
only) on the session's video row and emits ``session.ended`` for the post-session rating. Each
stored event is applied exactly once: its "processed" mark commits with its effects.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite

from core.clients.models import TherapySession
from core.store import OutboxEvent, Store
from core.store.models import Connection, Occurrence
from core.video.decide import Status
from core.video.events import VIDEO_LINK_CHANGED, VIDEO_LINK_MISSING
from core.video.models import CallEvent, SessionVideo

__all__ = [
    "SESSION_ENDED",
    "CallKind",
    "IncomingCallEvent",
    "apply_call_events",
    "record_call_event",
    "record_call_events",
]

log = logging.getLogger(__name__)

SESSION_ENDED = "session.ended"
"""Outbox event: the session's call really ended (payload: session_id, started_at, ended_at, source)."""


class CallKind(enum.StrEnum):
    STARTED = "started"
    ENDED = "ended"
    JOINED = "joined"
    LEFT = "left"
    DELETED = "deleted"


@dataclass(frozen=True, slots=True)
class IncomingCallEvent:
    """A provider's call event reduced to what Alliance keeps: no names, no e-mails."""

    provider: str
    event: str  # the provider's own event name (part of the dedupe key)
    kind: CallKind
    meeting_id: str
    meeting_uuid: str
    event_ts: int
    at: datetime | None
    role: str | None = None  # "host" or "client" for joins and leaves


def _row(ev: IncomingCallEvent, now: datetime) -> dict[str, Any]:
    return {
        "provider": ev.provider,
        "event": ev.event,
        "meeting_id": ev.meeting_id,
        "meeting_uuid": ev.meeting_uuid,
        "event_ts": ev.event_ts,
        "data": {"kind": ev.kind.value, "at": ev.at.isoformat() if ev.at else None, "role": ev.role},
        "received_at": now,
    }


_CALL_EVENTS: Table = CallEvent.__table__  # type: ignore[assignment]


def _insert_ignoring_duplicates(dialect: str) -> Any:
    table = _CALL_EVENTS
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # No .values(): one compiled (and cached) statement, executed with many parameter sets.
    return insert(table).on_conflict_do_nothing(index_elements=["provider", "event", "meeting_uuid", "event_ts"])


def record_call_events(store: Store, events: Sequence[IncomingCallEvent], now: datetime | None = None) -> int:
    """Store the events not stored before, in ONE transaction; returns how many were new.

    The webhook endpoint groups concurrent deliveries into one call (group commit): one writer
    and one commit for many events instead of many writers queueing on the database lock.
    """
    if not events:
        return 0
    now = now or datetime.now(UTC)
    # prompt_write: the webhook answers once this commits, and on SQLite it must not queue behind
    # the worker's transactions in the busy handler's coarse sleeps.
    with store.prompt_write() as conn:
        result = conn.execute(_insert_ignoring_duplicates(conn.dialect.name), [_row(ev, now) for ev in events])
        return max(int(result.rowcount), 0)


def record_call_event(store: Store, ev: IncomingCallEvent, now: datetime | None = None) -> bool:
    """Store the event unless it was stored before; True when it is new."""
    return record_call_events(store, [ev], now) == 1


def _at(data: dict[str, Any], fallback: datetime) -> datetime:
    text = data.get("at")
    return datetime.fromisoformat(text) if isinstance(text, str) else fallback


def _apply(session: Any, video: SessionVideo, kind: CallKind, role: str | None, at: datetime) -> str:
    if kind is CallKind.STARTED:
        # A meeting can be started again after it ended: the latest start wins then.
        if video.call_started_at is None or (video.call_ended_at is not None and at > video.call_ended_at):
            video.call_started_at = at
        return "started"
    if kind is CallKind.ENDED:
        video.call_ended_at = at
        found = _owner(session, video.session_id)
        session.add(
            OutboxEvent(
                kind=SESSION_ENDED,
                therapist_id=found.therapist_id,
                connection_id=found.connection_id,
                occurrence_id=found.id,
                payload={
                    "session_id": video.session_id,
                    "started_at": video.call_started_at.isoformat() if video.call_started_at else None,
                    "ended_at": at.isoformat(),
                    "source": video.provider,
                },
            )
        )
        return "ended"
    if kind is CallKind.JOINED:
        if role == "host" and video.host_joined_at is None:
            video.host_joined_at = at
        elif role == "client" and video.client_joined_at is None:
            video.client_joined_at = at
        return "joined"
    if kind is CallKind.LEFT:
        if role == "host":
            video.host_left_at = at
        elif role == "client":
            video.client_left_at = at
        return "left"
    # Deleted at the provider, not by us (our own deletes clear the meeting id first, so they
    # match no row): the session shows the link as missing until the therapist retries.
    video.status = Status.MISSING.value
    video.reason = "the Zoom meeting was deleted outside Alliance ('alliance video retry' makes a new one)"
    video.meeting_id = None
    video.join_url = None
    video.marker = None
    video.create_sent_at = None
    video.next_attempt_at = None
    # Its link leaves the calendar event (write-back), and the therapist is told (no silent gap).
    found = _owner(session, video.session_id)
    for event_kind, payload in (
        (VIDEO_LINK_CHANGED, {"session_id": video.session_id}),
        (VIDEO_LINK_MISSING, {"session_id": video.session_id, "reason": "deleted_outside"}),
    ):
        session.add(
            OutboxEvent(
                kind=event_kind,
                therapist_id=found.therapist_id,
                connection_id=found.connection_id,
                occurrence_id=found.id,
                payload=payload,
            )
        )
    return "deleted_outside"


def _owner(session: Any, session_id: int) -> Any:
    """The occurrence, calendar connection and therapist of a session (for outbox events)."""
    return session.execute(
        select(Occurrence.id, Occurrence.connection_id, Connection.therapist_id)
        .join(TherapySession, TherapySession.occurrence_id == Occurrence.id)
        .join(Connection, Connection.id == Occurrence.connection_id)
        .where(TherapySession.id == session_id)
    ).one()


def _apply_chunk(session: Any, ids: Sequence[int], now: datetime, outcomes: dict[str, int]) -> None:
    # Claim first (another worker may hold some of them): only what this UPDATE marked is ours,
    # and the mark commits together with the effects below. The claim returns the rows too, and the
    # outcomes are written as one UPDATE per outcome: on SQLite this transaction holds the write
    # lock the webhook's ack waits for, and loading and flushing each row through the ORM held it
    # 13-15 ms per 100 events, twice as long (benchmarks/README.md, Zoom section).
    table = _CALL_EVENTS
    claimed = session.execute(
        update(table)
        .where(table.c.id.in_(list(ids)), table.c.processed_at.is_(None))
        .values(processed_at=now)
        .returning(table.c.id, table.c.provider, table.c.meeting_id, table.c.data, table.c.received_at)
    ).all()
    if not claimed:
        return
    claimed.sort(key=lambda row: row.id)  # arrival order (RETURNING promises none)
    videos = {
        (v.provider, v.meeting_id): v
        for v in session.scalars(
            select(SessionVideo).where(SessionVideo.meeting_id.in_({r.meeting_id for r in claimed}))
        )
    }
    by_outcome: dict[str, list[int]] = {}
    for row in claimed:
        video = videos.get((row.provider, row.meeting_id))
        if video is None:
            outcome = "unknown_meeting"  # acknowledged and ignored
        else:
            data = dict(row.data or {})
            outcome = _apply(session, video, CallKind(str(data["kind"])), data.get("role"), _at(data, row.received_at))
            video.updated_at = now
            if video.meeting_id is None:  # deleted outside: later events of this chunk find nothing
                videos.pop((row.provider, row.meeting_id), None)
        by_outcome.setdefault(outcome, []).append(row.id)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    for outcome, outcome_ids in by_outcome.items():
        session.execute(update(table).where(table.c.id.in_(outcome_ids)).values(outcome=outcome))


def apply_call_events(store: Store, now: datetime | None = None, limit: int = 2000, chunk: int = 100) -> dict[str, int]:
    """Apply stored, unprocessed call events in arrival order; returns a count per outcome."""
    now = now or datetime.now(UTC)
    with store.session() as session:
        ids = list(
            session.scalars(
                select(CallEvent.id).where(CallEvent.processed_at.is_(None)).order_by(CallEvent.id).limit(limit)
            )
        )
    outcomes: dict[str, int] = {}
    # A chunk per transaction: few commits (the webhook's writer shares the database), and each
    # event's "processed" mark still commits together with its effects.
    for first in range(0, len(ids), chunk):
        with store.session() as session:
            _apply_chunk(session, ids[first : first + chunk], now, outcomes)
    if outcomes:
        log.info("call events applied: %s", outcomes)
    return outcomes
