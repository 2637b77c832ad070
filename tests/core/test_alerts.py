"""Alert rules R1-R8: table tests straight from reference/clinical.md section H, and properties."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from alliance.alerts import alert_thresholds
from alliance.settings import Settings
from core.alerts import (
    AlertThresholds,
    Attendance,
    RatingState,
    Scores,
    SessionRecord,
    Severity,
    evaluate,
    session_numbers,
)

A = Attendance
T0 = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


def series(*rows: object) -> list[SessionRecord]:
    """Weekly records from compact rows: a total spread over 4 items, an Attendance, a Scores, or a RatingState."""
    records = []
    for i, row in enumerate(rows):
        start = T0 + timedelta(weeks=i)
        if isinstance(row, Attendance):
            records.append(SessionRecord(i + 1, start, row))
        elif isinstance(row, RatingState):
            records.append(SessionRecord(i + 1, start, A.ATTENDED, rating=row))
        elif isinstance(row, Scores):
            records.append(SessionRecord(i + 1, start, A.ATTENDED, row))
        else:
            records.append(SessionRecord(i + 1, start, A.ATTENDED, spread(Decimal(str(row)))))
    return records


def spread(total: Decimal) -> Scores:
    """Four items summing to ``total`` (tenths), as even as possible, highest first."""
    tenths = int(total * 10)
    base, extra = divmod(tenths, 4)
    items = [Decimal(base + (1 if i < extra else 0)) / 10 for i in range(4)]
    return Scores(*items)


def fired(records: list[SessionRecord], thresholds: AlertThresholds | None = None) -> list[tuple[str, int, str]]:
    return [(f.rule, f.session_id, f.severity.value) for f in evaluate(records, thresholds)]


def only(rule: str, records: list[SessionRecord], thresholds: AlertThresholds | None = None) -> list[tuple[int, str]]:
    return [(s, sev) for r, s, sev in fired(records, thresholds) if r == rule]


# -- records -----------------------------------------------------------------------------------------


def test_scores_are_0_to_10_with_one_decimal_and_the_total_is_their_sum() -> None:
    s = Scores.of(9.5, 9, "8.7", 10)
    assert s.total == Decimal("37.2")
    for bad in ((10.1, 9, 9, 9), (-0.1, 9, 9, 9), (9.55, 9, 9, 9), ("nan", 9, 9, 9)):
        with pytest.raises(ValueError):
            Scores.of(*bad)
    with pytest.raises(ValueError, match="aware"):
        SessionRecord(1, datetime(2030, 1, 1))
    with pytest.raises(ValueError, match="attended"):
        SessionRecord(1, T0, A.NO_SHOW, s)
    assert SessionRecord(1, T0).rating is RatingState.MISSING
    assert SessionRecord(1, T0, A.NO_SHOW).rating is RatingState.NOT_REQUESTED
    assert SessionRecord(1, T0, scores=s).rating is RatingState.COMPLETED


def test_records_out_of_order_or_twice_are_refused() -> None:
    a, b = series(38, 38)
    with pytest.raises(ValueError, match="chronological"):
        evaluate([b, a])
    with pytest.raises(ValueError, match="twice"):
        evaluate([a, replace(b, session_id=a.session_id)])


def test_thresholds_are_checked() -> None:
    for bad in ({"cutoff": 41}, {"item_low": -1}, {"missing_run": 0}, {"cancellations": 5, "cancellation_window": 4}):
        with pytest.raises(ValueError):
            AlertThresholds(**bad)  # type: ignore[arg-type]
    assert AlertThresholds(cutoff=34).cutoff == Decimal(34)  # type: ignore[arg-type]


# -- one table per rule, from the reference's definitions ------------------------------------------


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((35.9,), [(1, "review")]),  # total < 36
        ((36,), []),  # exactly the cutoff is not below it
        ((38, 20.5, 39), [(2, "review")]),
    ],
)
def test_r1_total_below_cutoff(rows: tuple[float, ...], expected: list[tuple[int, str]]) -> None:
    assert only("R1", series(*rows)) == expected


def test_r1_cutoff_is_configurable_and_labelled_a_heuristic_for_the_neutral_form() -> None:
    records = series(35)
    assert only("R1", records, AlertThresholds(cutoff=Decimal(34))) == []
    [flag] = [f for f in evaluate(records) if f.rule == "R1"]
    assert "heuristic" in flag.explanation and "35.0" in flag.explanation
    licensed = [f for f in evaluate(records, AlertThresholds(cutoff_is_heuristic=False)) if f.rule == "R1"]
    assert "heuristic" not in licensed[0].explanation


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        (Scores.of(10, 10, 10, 8.9), [(1, "info")]),  # an item < 9 with total 38.9 >= 36
        (Scores.of(10, 10, 10, 9), []),  # 9 is not below 9
        (Scores.of(9, 9, 9, 8.9), []),  # total 35.9 < 36: that is R1's, not R2's
        (Scores.of(10, 10, 8, 8), [(1, "info")]),  # total exactly 36
    ],
)
def test_r2_low_item_with_total_at_or_above_cutoff(scores: Scores, expected: list[tuple[int, str]]) -> None:
    assert only("R2", series(scores)) == expected


def test_r2_names_the_low_items() -> None:
    [flag] = [f for f in evaluate(series(Scores.of(10, 8.5, 10, 10))) if f.rule == "R2"]
    assert "goals and topics 8.5" in flag.explanation


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((38, 37), [(2, "review")]),  # a drop of exactly 1.0 from the previous total
        ((38, 37.1), []),  # 0.9 is not enough
        ((39, 38), [(2, "priority")]),  # previous total >= 39 raises the severity
        ((38, 38.5, 37.9, 37.6), []),  # 0.6 then 0.3 below the previous, at most 0.9 below the best
        ((40, 39.5, 39, 38.5, 38), [(5, "review")]),  # a slow slide: 2.0 below the best at session 5
        ((30, 31, 32), []),  # rising is never a drop
    ],
)
def test_r3_drop_from_previous_or_below_personal_max(rows: tuple[float, ...], expected: list[tuple[int, str]]) -> None:
    assert only("R3", series(*rows)) == expected


def test_r3_shows_the_rows_it_compared() -> None:
    records = series(40, 39.5, 38)
    [flag] = [f for f in evaluate(records) if f.rule == "R3"]
    # 38 is 1.5 below last time (39.5) and 2.0 below the best (40): both rows, then the session itself.
    assert [r.session_id for r in flag.rows] == [1, 2, 3]
    assert "below last time" in flag.explanation and "best so far" in flag.explanation


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((34, 35, 35.9, 30), [(1, "review"), (2, "review"), (3, "review")]),  # sessions 1-3 only
        ((A.NO_SHOW, 38, 38, 30), [(4, "review")]),  # a no-show is no session: the 30 is session 3
        ((38, 38, 38, 35), []),  # session 4
    ],
)
def test_r4_below_cutoff_in_sessions_1_to_3(rows: tuple[object, ...], expected: list[tuple[int, str]]) -> None:
    assert only("R4", series(*rows)) == expected


def test_r4_is_worded_as_an_opportunity() -> None:
    [flag] = [f for f in evaluate(series(33)) if f.rule == "R4"]
    assert "opportunity" in flag.explanation


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((40, 40, 40), [(3, "info")]),
        ((40, 40, 40, 40, 40), [(3, "info")]),  # once
        ((40, 40), []),  # not yet three
        ((40, 39.9, 40, 40), []),  # not from session 1 on
        ((38, 40, 40, 40), []),
        ((40, A.NO_SHOW, 40, 40), [(4, "info")]),  # the first three sessions that took place
        ((40, RatingState.MISSING, 40), []),
    ],
)
def test_r5_three_perfect_scores_from_session_1(rows: tuple[object, ...], expected: list[tuple[int, str]]) -> None:
    assert only("R5", series(*rows)) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((38, RatingState.MISSING, RatingState.MISSING), [(3, "review")]),
        ((RatingState.MISSING, 38, RatingState.MISSING), []),  # not consecutive
        ((RatingState.MISSING, A.CLIENT_CANCELLED, RatingState.MISSING), [(3, "review")]),  # a cancelled slot
        ((RatingState.MISSING, RatingState.PENDING), []),  # the link is still out
        ((RatingState.MISSING,) * 4, [(2, "review")]),  # one flag per run
        ((38, RatingState.DECLINED), [(2, "review")]),  # declined
    ],
)
def test_r6_rating_not_completed_twice_in_a_row_or_declined(
    rows: tuple[object, ...], expected: list[tuple[int, str]]
) -> None:
    assert only("R6", series(*rows)) == expected


def test_r6_run_shows_every_session_without_a_rating() -> None:
    [flag] = [f for f in evaluate(series(*(RatingState.MISSING,) * 3)) if f.rule == "R6"]
    assert [r.session_id for r in flag.rows] == [1, 2]


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((A.NO_SHOW, 38, A.SCHEDULED), [(1, "priority")]),  # session 1: before session 3
        ((38, A.NO_SHOW, 38), [(2, "priority")]),  # session 2
        ((38, 38, A.NO_SHOW, 38), [(3, "review")]),  # session 3 is not before session 3
        ((38, 38, 38, A.NO_SHOW, A.SCHEDULED), [(4, "review")]),
        ((38, 38, 38, A.NO_SHOW), [(4, "priority")]),  # no next session booked
        ((38, 38, 38, A.NO_SHOW, A.CLIENT_CANCELLED), [(4, "priority")]),  # nothing that will take place
    ],
)
def test_r7_any_no_show(rows: tuple[object, ...], expected: list[tuple[int, str]]) -> None:
    assert only("R7", series(*rows)) == expected


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ((38, A.CLIENT_CANCELLED, 38, A.CLIENT_CANCELLED_LATE), [(4, "review")]),  # 2 in the last 4
        ((A.CLIENT_CANCELLED, 38, 38, 38, A.CLIENT_CANCELLED), []),  # 5 apart: never 2 in any 4
        ((A.CLIENT_CANCELLED, A.CLIENT_CANCELLED, A.CLIENT_CANCELLED), [(2, "review"), (3, "review")]),
        ((38, A.THERAPIST_CANCELLED, A.CLIENT_CANCELLED, 38), []),  # the therapist's cancellations do not count
        ((A.CLIENT_CANCELLED, 38, A.CLIENT_CANCELLED, A.SCHEDULED), [(3, "review")]),  # booked slots are not past
    ],
)
def test_r8_two_client_cancellations_in_the_last_four(
    rows: tuple[object, ...], expected: list[tuple[int, str]]
) -> None:
    assert only("R8", series(*rows)) == expected


def test_r8_window_and_count_are_configurable() -> None:
    records = series(A.CLIENT_CANCELLED, 38, 38, 38, A.CLIENT_CANCELLED)
    assert only("R8", records, AlertThresholds(cancellation_window=5)) == [(5, "review")]
    assert only("R8", series(A.CLIENT_CANCELLED), AlertThresholds(cancellations=1)) == [(1, "review")]


def test_session_numbers_count_sessions_that_took_place() -> None:
    records = series(38, A.NO_SHOW, 38, A.CLIENT_CANCELLED, 38)
    assert session_numbers(records) == {1: 1, 2: 2, 3: 2, 4: 3, 5: 3}


# -- properties -----------------------------------------------------------------------------------

tenths = st.integers(min_value=0, max_value=100).map(lambda n: Decimal(n) / 10)
scores = st.builds(Scores, tenths, tenths, tenths, tenths)
row = st.one_of(
    scores,
    st.sampled_from(list(Attendance)),
    st.sampled_from([RatingState.MISSING, RatingState.DECLINED, RatingState.PENDING]),
)
histories = st.lists(row, max_size=12).map(lambda rows: series(*rows))
cutoffs = st.integers(min_value=0, max_value=400).map(lambda n: Decimal(n) / 10)


@given(histories)
def test_flags_point_at_rows_of_the_input_and_are_deterministic(records: list[SessionRecord]) -> None:
    flags = evaluate(records)
    ids = {r.session_id for r in records}
    for flag in flags:
        assert flag.rule in {f"R{n}" for n in range(1, 9)}
        assert flag.session_id in ids and flag.rows and all(r in records for r in flag.rows)
        assert flag.session_id in {r.session_id for r in flag.rows}
        assert flag.explanation.endswith(".")
    assert evaluate(records) == flags


@given(st.integers(min_value=0, max_value=12), st.integers(min_value=90, max_value=99))
def test_no_flag_on_a_stable_high_series(length: int, tenth: int) -> None:
    # Every session attended and rated the same high score (items 9.0-9.9, total 36-39.6): nothing to flag.
    item = Decimal(tenth) / 10
    assert evaluate(series(*[Scores(item, item, item, item)] * length)) == []


@given(histories, cutoffs, cutoffs)
def test_raising_the_cutoff_never_clears_an_r1_or_r4_flag(records: list[SessionRecord], a: Decimal, b: Decimal) -> None:
    low, high = sorted((a, b))

    def flagged(cutoff: Decimal, rule: str) -> set[int]:
        return {f.session_id for f in evaluate(records, AlertThresholds(cutoff=cutoff)) if f.rule == rule}

    assert flagged(low, "R1") <= flagged(high, "R1")
    assert flagged(low, "R4") <= flagged(high, "R4")


@given(histories, cutoffs)
def test_r1_is_exactly_the_totals_below_the_cutoff(records: list[SessionRecord], cutoff: Decimal) -> None:
    flagged = {f.session_id for f in evaluate(records, AlertThresholds(cutoff=cutoff)) if f.rule == "R1"}
    assert flagged == {r.session_id for r in records if r.total is not None and r.total < cutoff}


@given(histories, st.data())
def test_lowering_a_score_never_clears_its_r1_flag(records: list[SessionRecord], data: st.DataObject) -> None:
    rated = [i for i, r in enumerate(records) if r.scores is not None and r.scores.bond > 0]
    if not rated:
        return
    index = data.draw(st.sampled_from(rated))
    before = {f.session_id for f in evaluate(records) if f.rule == "R1"}
    target = records[index]
    assert target.scores is not None
    lowered = replace(target, scores=replace(target.scores, bond=target.scores.bond - Decimal("0.1")))
    after = {f.session_id for f in evaluate([*records[:index], lowered, *records[index + 1 :]]) if f.rule == "R1"}
    assert before - {target.session_id} == after - {target.session_id}
    assert target.session_id not in before or target.session_id in after


@given(st.lists(tenths, min_size=1, max_size=10))
def test_a_rising_series_never_drops(increments: list[Decimal]) -> None:
    totals, running = [], Decimal(0)
    for step in increments:
        running = min(Decimal(40), running + step)
        totals.append(running)
    assert only("R3", series(*totals)) == []


@given(histories)
def test_r3_priority_only_after_a_high_previous_total(records: list[SessionRecord]) -> None:
    rated = [r for r in records if r.total is not None]
    for flag in evaluate(records):
        if flag.rule == "R3":
            previous = rated[[r.session_id for r in rated].index(flag.session_id) - 1]
            assert previous.total is not None
            assert (flag.severity is Severity.PRIORITY) == (previous.total >= Decimal(39))


def test_thresholds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert alert_thresholds(Settings()) == AlertThresholds()
    monkeypatch.setenv("ALLIANCE_ALERT_CUTOFF", "34")
    monkeypatch.setenv("ALLIANCE_ALERT_CANCELLATION_WINDOW", "6")
    custom = alert_thresholds(Settings())
    assert (custom.cutoff, custom.cancellation_window) == (Decimal(34), 6)
    assert only("R1", series(35), custom) == []
    monkeypatch.setenv("ALLIANCE_ALERT_CUTOFF", "36.55")
    with pytest.raises(ValueError):
        Settings()
    monkeypatch.setenv("ALLIANCE_ALERT_CUTOFF", "36")
    monkeypatch.setenv("ALLIANCE_ALERT_CANCELLATIONS", "7")
    with pytest.raises(ValueError, match="cancellation_window"):
        alert_thresholds(Settings())
