"""A client's alert series built from real sessions in the store (times, cancellations from the calendar)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from core.alerts import (
    Attendance,
    RatingState,
    Scores,
    evaluate,
    records_from_sessions,
)
from core.clients import assign_event, assign_series, create_client, list_sessions
from core.store import Store
from core.sync import OccurrenceKey, Status, recurrence_id_for
from tests.core.test_clients import MONDAY, World, _occ


def test_records_follow_the_sessions_and_feed_the_rules(store: Store) -> None:
    world = World(store)
    client = create_client(store, world.therapist, modality="online")
    other = create_client(store, world.therapist)
    world.weekly("weekly@test", MONDAY, 6)
    world.sync()
    assign_series(store, world.therapist, world.connection, "weekly@test", client.code, from_start=MONDAY)
    # Week 3 is cancelled at the source.
    third = MONDAY + timedelta(weeks=2)
    world.calendar.put(_occ(OccurrenceKey("weekly@test", recurrence_id_for(third)), third, status=Status.CANCELLED))
    world.sync()
    sessions = list_sessions(store, world.therapist, client_code=client.code)
    ids = [s.id for s in sessions]
    now = MONDAY + timedelta(weeks=4, hours=3)  # week 5 is over two hours ago, week 6 ahead

    records = records_from_sessions(
        sessions,
        now=now,
        ratings={ids[0]: Scores.of(10, 10, 9.5, 9.5), ids[1]: Scores.of(9, 9, 8.5, 8.5)},
        no_shows={ids[3]},
        client_cancelled={ids[2]},
    )
    assert [(r.session_id, r.attendance, r.rating) for r in records] == [
        (ids[0], Attendance.ATTENDED, RatingState.COMPLETED),
        (ids[1], Attendance.ATTENDED, RatingState.COMPLETED),
        (ids[2], Attendance.CLIENT_CANCELLED, RatingState.NOT_REQUESTED),
        (ids[3], Attendance.NO_SHOW, RatingState.NOT_REQUESTED),
        (ids[4], Attendance.ATTENDED, RatingState.PENDING),  # the link is still out
        (ids[5], Attendance.SCHEDULED, RatingState.NOT_REQUESTED),
    ]
    flags = [(f.rule, f.session_id, f.severity.value) for f in evaluate(records)]
    # 35 after 39: a 4-point drop from a high previous total (R3 priority), below the cutoff at
    # session 2 (R1, R4); the no-show is at session 3 with a session booked after it (R7 review).
    assert flags == [
        ("R1", ids[1], "review"),
        ("R3", ids[1], "priority"),
        ("R4", ids[1], "review"),
        ("R7", ids[3], "review"),
    ]

    # Eight days later, told nothing of no-shows or who cancelled: ratings not given within the
    # link's 7 days are missing, the last session's is still pending, the cancellation is the therapist's.
    later = records_from_sessions(sessions, now=now + timedelta(days=8), ratings={ids[0]: Scores.of(9, 9, 9, 9)})
    assert [(r.attendance, r.rating) for r in later] == [
        (Attendance.ATTENDED, RatingState.COMPLETED),
        (Attendance.ATTENDED, RatingState.MISSING),
        (Attendance.THERAPIST_CANCELLED, RatingState.NOT_REQUESTED),
        (Attendance.ATTENDED, RatingState.MISSING),
        (Attendance.ATTENDED, RatingState.MISSING),
        (Attendance.ATTENDED, RatingState.PENDING),
    ]
    [r6] = [f for f in evaluate(later) if f.rule == "R6"]
    assert [r.session_id for r in r6.rows] == [ids[1], ids[3]]

    world.put("single@test", MONDAY + timedelta(days=1))
    world.sync()
    assign_event(store, world.therapist, "single@test", other.code)
    mixed = [sessions[0], *list_sessions(store, world.therapist, client_code=other.code)]
    with pytest.raises(ValueError, match="one client"):
        records_from_sessions(mixed, now=now)
