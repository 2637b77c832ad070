"""core.client_trends on both databases: a client's series and flags from synced sessions and real ratings."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from core.alerts import AlertThresholds, Attendance, RatingState, Severity
from core.client_trends import client_trend
from core.clients import UnknownClient
from core.store import Store
from core.sync import Status
from tests.trends.world import Course


@pytest.fixture
def course(store: Store) -> Course:
    return Course(store)


def _flags(trend: object) -> list[tuple[int, str]]:
    return [(f.session_id, f.rule) for f in trend.flags]  # type: ignore[attr-defined]


def test_the_series_follows_the_sessions_ratings_and_calls(course: Course) -> None:
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    by_id = {row.record.session_id: row for row in trend.rows}
    assert [row.record.session_id for row in trend.rows] == [
        course.s1,
        course.s2,
        course.s3,
        course.s4,
        course.s5,
        course.s6,
    ]
    assert [row.number for row in trend.rows] == [1, 2, 3, 3, 4, 5]  # the no-show gets the number it would have had
    assert by_id[course.s1].record.total == Decimal("38.5") and by_id[course.s1].measure == "alliance4"
    s2_scores = by_id[course.s2].record.scores
    assert s2_scores is not None and s2_scores.bond == Decimal("8.5")
    assert by_id[course.s3].record.attendance is Attendance.NO_SHOW
    assert by_id[course.s4].record.rating is RatingState.MISSING
    assert by_id[course.s5].record.rating is RatingState.NOT_REQUESTED  # a 5-minute call
    assert by_id[course.s6].record.attendance is Attendance.SCHEDULED


def test_flags_appear_exactly_where_the_reference_rules_say(course: Course) -> None:
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    assert _flags(trend) == [
        (course.s1, "R2"),
        (course.s2, "R1"),
        (course.s2, "R3"),
        (course.s2, "R4"),
        (course.s3, "R7"),
    ]
    r3 = next(f for f in trend.flags if f.rule == "R3")
    assert [r.session_id for r in r3.rows] == [course.s1, course.s2]  # the earlier rating and the drop
    assert r3.severity is Severity.REVIEW  # the previous total 38.5 is under 39
    r7 = next(f for f in trend.flags if f.rule == "R7")
    assert r7.severity is Severity.REVIEW and "Consider reaching out" in r7.explanation


def test_a_second_missing_rating_in_a_row_raises_r6_and_a_rating_clears_it(course: Course) -> None:
    # Session 5's short call neither breaks nor extends the run; another unrated session does extend it.
    extra = course.missed_rating("c4b", 1.5)
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    r6 = [f for f in trend.flags if f.rule == "R6"]
    assert [(f.session_id, [r.session_id for r in f.rows]) for f in r6] == [(extra, [course.s4, extra])]
    course.rate(extra, {"bond": "9.5", "goals": "9.5", "approach": "9.5", "overall": "9.5"})
    again = client_trend(course.store, course.therapist, course.code, now=course.now)
    assert not [f for f in again.flags if f.rule == "R6"]


def test_a_rating_still_expected_is_pending_not_missing(course: Course) -> None:
    recent = course.missed_rating("c-recent", 0.5)
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    row = next(r for r in trend.rows if r.record.session_id == recent)
    assert row.record.rating is RatingState.PENDING and not [f for f in trend.flags if f.rule == "R6"]


def test_thresholds_are_the_ones_given(course: Course) -> None:
    trend = client_trend(
        course.store, course.therapist, course.code, now=course.now, thresholds=AlertThresholds(cutoff=Decimal(34))
    )
    # 35.5 is above a cutoff of 34: no R1 or R4, and its low item (8.5) now gives R2.
    assert _flags(trend) == [(course.s1, "R2"), (course.s2, "R2"), (course.s2, "R3"), (course.s3, "R7")]


def test_a_cancelled_session_leaves_the_series_as_the_therapists_cancellation(course: Course) -> None:
    start = course.now - timedelta(weeks=5) + timedelta(weeks=3)
    course.world.put("c4", start, status=Status.CANCELLED)
    course.world.sync()
    trend = client_trend(course.store, course.therapist, course.code, now=course.now)
    row = next(r for r in trend.rows if r.record.session_id == course.s4)
    assert row.record.attendance is Attendance.THERAPIST_CANCELLED
    assert row.record.rating is RatingState.NOT_REQUESTED


def test_another_therapists_client_is_unknown(course: Course, store: Store) -> None:
    other = Course(store, "other@alliance.test")
    with pytest.raises(UnknownClient):
        client_trend(store, other.therapist, course.code, now=course.now)
    with pytest.raises(UnknownClient):
        client_trend(store, course.therapist, "NOPE", now=course.now)
    mine = client_trend(store, other.therapist, other.code, now=other.now)
    assert {r.record.session_id for r in mine.rows}.isdisjoint({course.s1, course.s2, course.s3})
