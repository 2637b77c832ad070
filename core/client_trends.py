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
from core.attendance import CancelledBy, cancellations
from core.clients import Client, Modality, SessionSource, SessionView, TherapySession, UnknownClient, normalise_code
from core.links.policy import CallTimes, LinkPolicy, rating_opens_at
from core.ratings.models import Rating, RatingDecline, SessionEnd
from core.store.db import Store
from core.store.models import Connection, Occurrence
from core.sync.types import Status


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


@dataclass(frozen=True, slots=True)
class _Rated:
    measure: str
    submitted_at: datetime
    scores: Scores


@dataclass(frozen=True, slots=True)
class _Stored:
    """What the trend reads, in one transaction: the client, its sessions, ratings and reported calls."""

    client_id: int
    client_code: str
    sessions: list[SessionView]
    ratings: dict[int, _Rated]
    calls: dict[int, CallTimes]
    declined: set[int]


def _chunks(ids: Sequence[int], size: int = 500) -> list[Sequence[int]]:
    return [ids[i : i + size] for i in range(0, len(ids), size)]


def _load(store: Store, therapist_id: int, code: str) -> _Stored:
    """Column reads only (no ORM entities): this runs for every page view, API call and CLI run."""
    normalised = normalise_code(code)
    with store.session() as session:
        client = (
            session.execute(
                select(Client.id, Client.code).where(Client.therapist_id == therapist_id, Client.code == normalised)
            ).first()
            if normalised
            else None
        )
        if client is None:
            raise UnknownClient("unknown client code")
        client_id, client_code = client
        rows = session.execute(
            select(
                TherapySession.id,
                TherapySession.occurrence_id,
                TherapySession.modality,
                TherapySession.source,
                TherapySession.created_at,
                TherapySession.updated_at,
                Occurrence.status,
                Occurrence.start_utc,
                Occurrence.end_utc,
                Occurrence.all_day,
                Occurrence.timezone,
                Occurrence.ical_uid,
                Occurrence.recurrence_id,
                Occurrence.connection_id,
                Connection.name,
            )
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            # Both sides scoped, as list_sessions does: the client and the calendar are this therapist's.
            .where(TherapySession.client_id == client_id, Connection.therapist_id == therapist_id)
            .order_by(Occurrence.start_utc, TherapySession.id)
        ).all()
        sessions = [
            SessionView(
                id=sid,
                occurrence_id=occurrence_id,
                client_id=client_id,
                client_code=client_code,
                modality=Modality(modality),
                source=SessionSource(source),
                status=Status(status),
                start=start,
                end=end,
                all_day=all_day,
                timezone=timezone,
                uid=uid,
                recurrence_id=recurrence_id,
                connection_id=connection_id,
                connection=connection,
                created_at=created_at,
                updated_at=updated_at,
            )
            for (
                sid,
                occurrence_id,
                modality,
                source,
                created_at,
                updated_at,
                status,
                start,
                end,
                all_day,
                timezone,
                uid,
                recurrence_id,
                connection_id,
                connection,
            ) in rows
            if not all_day  # an all-day entry is not a session that can be rated
        ]
        ratings = {
            sid: _Rated(measure, submitted_at, Scores.of(bond, goals, approach, overall))
            for sid, measure, submitted_at, bond, goals, approach, overall in session.execute(
                select(
                    Rating.session_id,
                    Rating.measure,
                    Rating.submitted_at,
                    Rating.bond,
                    Rating.goals,
                    Rating.approach,
                    Rating.overall,
                ).where(Rating.client_id == client_id)
            )
        }
        calls: dict[int, CallTimes] = {}
        for chunk in _chunks([s.id for s in sessions]):
            for sid, started, ended, no_show in session.execute(
                select(SessionEnd.session_id, SessionEnd.started_at, SessionEnd.ended_at, SessionEnd.no_show).where(
                    SessionEnd.session_id.in_(chunk)
                )
            ):
                calls[sid] = CallTimes(started_at=started, ended_at=ended, no_show=no_show)
        declined = set(session.scalars(select(RatingDecline.session_id).where(RatingDecline.client_id == client_id)))
    return _Stored(client_id, client_code, sessions, ratings, calls, declined)


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
    stored = _load(store, therapist_id, code)
    sessions, ratings = stored.sessions, stored.ratings
    ids = {s.id for s in sessions}
    cancelled = cancellations(store, [s.id for s in sessions if s.status is Status.CANCELLED])
    by_client = {sid for sid, c in cancelled.items() if c.cancelled_by is CancelledBy.CLIENT}
    records = records_from_sessions(
        sessions,
        now=at,
        ratings={sid: r.scores for sid, r in ratings.items() if sid in ids},
        no_shows={sid for sid, call in stored.calls.items() if call.no_show},
        client_cancelled=by_client,
        late_cancelled={sid for sid in by_client if cancelled[sid].late},
        declined=stored.declined & ids,
        rating_window=timedelta(days=link_policy.valid_days),
    )
    ends = {s.id: s.end for s in sessions}
    # A call the platform reported too short to rate: no rating was ever asked for.
    short = {
        sid
        for sid, call in stored.calls.items()
        if not call.no_show and rating_opens_at(ends[sid], call, link_policy) is None
    }
    records = [
        replace(r, rating=RatingState.NOT_REQUESTED)
        if r.session_id in short and r.attendance is Attendance.ATTENDED and r.scores is None
        else r
        for r in records
    ]
    chosen = thresholds or AlertThresholds()
    flags = evaluate(records, chosen)
    numbers = session_numbers(records)
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
    return ClientTrend(
        client_id=stored.client_id, client_code=stored.client_code, rows=rows, flags=tuple(flags), thresholds=chosen
    )


__all__ = ["ClientTrend", "TrendRow", "client_trend"]
