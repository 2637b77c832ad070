"""Build a client's :class:`SessionRecord` series from the sessions Alliance already keeps.

The sessions (their times and calendar status) come from ``core.clients``; ratings, no-shows and
who cancelled come from the features that record them, passed in as plain mappings keyed by
session id, so this stays a pure function the ratings page and the alert job can both call.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta

from core.alerts.records import Attendance, RatingState, Scores, SessionRecord
from core.clients import SessionView
from core.sync.types import Status

# A rating is still expected while the client's link is valid (7 days after the session by default).
DEFAULT_RATING_WINDOW = timedelta(days=7)


def records_from_sessions(
    sessions: Sequence[SessionView],
    *,
    now: datetime,
    ratings: Mapping[int, Scores] | None = None,
    no_shows: Collection[int] = (),
    client_cancelled: Collection[int] = (),
    late_cancelled: Collection[int] = (),
    declined: Collection[int] = (),
    rating_window: timedelta = DEFAULT_RATING_WINDOW,
) -> list[SessionRecord]:
    """One record per session of one client, by start.

    A cancelled session counts as the client's only when its id is in ``client_cancelled`` or
    ``late_cancelled`` (a calendar does not say who cancelled); otherwise it is the therapist's.
    A session not yet over is ``scheduled``; a rating is ``pending`` until ``rating_window`` after
    the session's end, then ``missing``.
    """
    clients = {s.client_id for s in sessions}
    if len(clients) > 1:
        raise ValueError("records_from_sessions takes the sessions of one client")
    scores = ratings or {}
    records = []
    for s in sorted(sessions, key=lambda s: (s.start, s.id)):
        rating: RatingState | None = None
        if s.status is Status.CANCELLED:
            if s.id in late_cancelled:
                attendance = Attendance.CLIENT_CANCELLED_LATE
            elif s.id in client_cancelled:
                attendance = Attendance.CLIENT_CANCELLED
            else:
                attendance = Attendance.THERAPIST_CANCELLED
        elif s.id in no_shows:
            attendance = Attendance.NO_SHOW
        elif s.id not in scores and s.end > now:
            attendance = Attendance.SCHEDULED
        else:
            attendance = Attendance.ATTENDED
            if s.id not in scores:
                if s.id in declined:
                    rating = RatingState.DECLINED
                elif now < s.end + rating_window:
                    rating = RatingState.PENDING
        records.append(
            SessionRecord(
                s.id,
                s.start,
                attendance,
                scores.get(s.id) if attendance is Attendance.ATTENDED else None,
                rating,
            )
        )
    return records


__all__ = ["DEFAULT_RATING_WINDOW", "records_from_sessions"]
