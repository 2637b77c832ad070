"""A client's alliance ratings over their sessions with the advisory flags R1-R8, from what is stored.

This is where the pieces meet: the client's sessions (``core.clients``), the ratings they
submitted and the calls the video platform reported (``core.ratings``), turned into the plain
records of ``core.alerts`` and evaluated with the practice's thresholds. Everything is scoped to
one therapist: another therapist's client is ``UnknownClient``, exactly like one that does not exist.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from core.alerts import (
    AlertThresholds,
    Attendance,
    Flag,
    RatingState,
    Scores,
    SessionRecord,
    evaluate,
    records_from_sessions,
    session_numbers,
)
from core.clients import SessionView, get_client, list_sessions
from core.links.policy import CallTimes, LinkPolicy, rating_opens_at
from core.ratings import RatingRecord, list_client_ratings, no_show_sessions
from core.ratings.models import SessionEnd
from core.store.db import Store


@dataclass(frozen=True, slots=True)
class TrendRow:
    """One scheduled session of the client as the therapist's table shows it."""

    record: SessionRecord
    number: int  # 1 + sessions attended before it
    end: datetime
    measure: str | None  # "alliance4" or "srs" when rated
    submitted_at: datetime | None


@dataclass(frozen=True, slots=True)
class ClientTrend:
    """The client's series (oldest first), the flags over it and the thresholds they used."""

    client_id: int
    client_code: str
    rows: tuple[TrendRow, ...]
    flags: tuple[Flag, ...]
    thresholds: AlertThresholds

    @property
    def records(self) -> tuple[SessionRecord, ...]:
        return tuple(row.record for row in self.rows)

    def flags_at(self, session_id: int) -> tuple[Flag, ...]:
        return tuple(f for f in self.flags if f.session_id == session_id)


def _scores(rating: RatingRecord) -> Scores:
    return Scores.of(rating.bond, rating.goals, rating.approach, rating.overall)


def _short_calls(store: Store, sessions: Sequence[SessionView], policy: LinkPolicy) -> set[int]:
    """Sessions whose call the platform reported too short to rate (no rating was ever asked for)."""
    ids = [s.id for s in sessions]
    if not ids:
        return set()
    ends = {s.id: s.end for s in sessions}
    found: set[int] = set()
    with store.session() as session:
        rows = session.execute(
            select(SessionEnd.session_id, SessionEnd.started_at, SessionEnd.ended_at, SessionEnd.no_show).where(
                SessionEnd.session_id.in_(ids)
            )
        )
        for sid, started, ended, no_show in rows:
            call = CallTimes(started_at=started, ended_at=ended, no_show=no_show)
            if not no_show and rating_opens_at(ends[sid], call, policy) is None:
                found.add(sid)
    return found


def client_trend(
    store: Store,
    therapist_id: int,
    code: str,
    *,
    thresholds: AlertThresholds | None = None,
    policy: LinkPolicy | None = None,
    now: datetime | None = None,
) -> ClientTrend:
    """The rating series and advisory flags of one of this therapist's clients (``UnknownClient`` otherwise).

    A rating counts as pending while the client's link is valid (``policy.valid_days`` after the
    session), then missing; a session whose call was too short to rate asked for no rating; a
    no-show the platform reported is a no-show. Who cancelled a session is not known from a
    calendar, so every cancellation counts as the therapist's (R8 needs that signal to fire).
    """
    link_policy = policy or LinkPolicy()
    at = now or datetime.now(UTC)
    client = get_client(store, therapist_id, code)
    sessions = [s for s in list_sessions(store, therapist_id, client_code=client.code) if not s.all_day]
    ratings = {r.session_id: r for r in list_client_ratings(store, therapist_id, client.id)}
    records = records_from_sessions(
        sessions,
        now=at,
        ratings={sid: _scores(r) for sid, r in ratings.items()},
        no_shows=no_show_sessions(store, therapist_id, client.id),
        rating_window=timedelta(days=link_policy.valid_days),
    )
    short = _short_calls(store, sessions, link_policy)
    records = [
        replace(r, rating=RatingState.NOT_REQUESTED)
        if r.session_id in short and r.attendance is Attendance.ATTENDED and r.scores is None
        else r
        for r in records
    ]
    chosen = thresholds or AlertThresholds()
    flags = evaluate(records, chosen)
    numbers = session_numbers(records)
    ends = {s.id: s.end for s in sessions}
    rows = tuple(
        TrendRow(
            record=r,
            number=numbers[r.session_id],
            end=ends[r.session_id],
            measure=ratings[r.session_id].measure if r.scores is not None else None,
            submitted_at=ratings[r.session_id].submitted_at if r.scores is not None else None,
        )
        for r in records
    )
    return ClientTrend(client_id=client.id, client_code=client.code, rows=rows, flags=tuple(flags), thresholds=chosen)


__all__ = ["ClientTrend", "TrendRow", "client_trend"]
