"""Alert rules R1-R8 of reference/clinical.md (section H) as pure functions over one client's records.

Advisory and for the therapist only: each flag prompts a conversation, names its rule and shows
the rows that triggered it. Nothing here reads a clock or a database; the same records and
thresholds always give the same flags. Wording says "consider", never "rupture detected":
logistics and ratings cannot tell illness, childcare or a bad connection from withdrawal.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from core.alerts.records import ITEM_LABELS, Attendance, RatingState, SessionRecord
from core.alerts.thresholds import AlertThresholds


class Severity(enum.StrEnum):
    INFO = "info"
    REVIEW = "review"
    PRIORITY = "priority"


@dataclass(frozen=True, slots=True)
class Flag:
    """One advisory flag: which rule, how urgent, why in plain words, and the rows behind it."""

    rule: str
    severity: Severity
    session_id: int  # the session at which the rule fired
    explanation: str
    rows: tuple[SessionRecord, ...]


Rule = Callable[[Sequence[SessionRecord], AlertThresholds], list[Flag]]


def _fmt(value: Decimal) -> str:
    return f"{value:.1f}"


def _cutoff_note(t: AlertThresholds) -> str:
    return (
        " (a heuristic for this form: the cutoff's norms belong to the licensed SRS)" if t.cutoff_is_heuristic else ""
    )


def _rated(records: Sequence[SessionRecord]) -> list[SessionRecord]:
    return [r for r in records if r.scores is not None]


def session_numbers(records: Sequence[SessionRecord]) -> dict[int, int]:
    """Session number per record: 1 + sessions attended before it (a missed slot gets the number it would have had)."""
    numbers: dict[int, int] = {}
    attended = 0
    for record in records:
        numbers[record.session_id] = attended + 1
        if record.attendance is Attendance.ATTENDED:
            attended += 1
    return numbers


def r1_below_cutoff(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R1: a total below the cutoff."""
    return [
        Flag(
            "R1",
            Severity.REVIEW,
            r.session_id,
            f"The rating total was {_fmt(total)}, below the cutoff of {_fmt(t.cutoff)}{_cutoff_note(t)}. "
            "Consider asking what could be better.",
            (r,),
        )
        for r in _rated(records)
        if (total := r.total) is not None and total < t.cutoff
    ]


def r2_low_item(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R2: an item below ``item_low`` while the total is at or above the cutoff."""
    flags = []
    for r in records:
        scores = r.scores
        if scores is None:
            continue
        low = [name for name, value in scores.items.items() if value < t.item_low]
        if low and scores.total >= t.cutoff:
            named = ", ".join(f"{ITEM_LABELS[n]} {_fmt(scores.items[n])}" for n in low)
            flags.append(
                Flag(
                    "R2",
                    Severity.INFO,
                    r.session_id,
                    f"The total was fine, but an item was rated below {_fmt(t.item_low)} ({named}). "
                    "Consider asking about it.",
                    (r,),
                )
            )
    return flags


def r3_drop(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R3: the total fell by ``drop_from_previous`` since the last rating, or lies ``drop_from_max`` below the best."""
    flags = []
    best: tuple[Decimal, SessionRecord] | None = None
    previous: tuple[Decimal, SessionRecord] | None = None
    for r in records:
        if r.scores is None:
            continue
        total = r.scores.total
        if previous is not None and best is not None:
            (prev_total, prev_row), (best_total, best_row) = previous, best
            reasons, rows = [], []
            if prev_total - total >= t.drop_from_previous:
                reasons.append(f"{_fmt(prev_total - total)} points below last time ({_fmt(prev_total)})")
                rows.append(prev_row)
            if best_total - total >= t.drop_from_max:
                reasons.append(f"{_fmt(best_total - total)} points below the client's best so far ({_fmt(best_total)})")
                if best_row is not prev_row:
                    rows.append(best_row)
            if reasons:
                severity = Severity.PRIORITY if prev_total >= t.high_previous else Severity.REVIEW
                flags.append(
                    Flag(
                        "R3",
                        severity,
                        r.session_id,
                        f"The rating dropped: {_fmt(total)} is " + " and ".join(reasons) + ". "
                        "Consider asking what could be different.",
                        (*sorted(rows, key=lambda row: row.start), r),
                    )
                )
        previous = (total, r)
        if best is None or total > best[0]:
            best = (total, r)
    return flags


def r4_early_below_cutoff(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R4: below the cutoff in one of the first sessions, worded as an opportunity."""
    numbers = session_numbers(records)
    return [
        Flag(
            "R4",
            Severity.REVIEW,
            r.session_id,
            f"Session {numbers[r.session_id]} was rated {_fmt(total)}, below {_fmt(t.cutoff)}{_cutoff_note(t)}. "
            "Early in therapy this is an opportunity: talking about it now often goes with a good course.",
            (r,),
        )
        for r in _rated(records)
        if numbers[r.session_id] <= t.early_sessions and (total := r.total) is not None and total < t.cutoff
    ]


def r5_perfect_from_the_start(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R5: perfect totals at each of the first ``perfect_run`` sessions."""
    first = [r for r in records if r.attendance is Attendance.ATTENDED][: t.perfect_run]
    if len(first) < t.perfect_run or any(r.total is None or r.total < t.perfect_total for r in first):
        return []
    return [
        Flag(
            "R5",
            Severity.INFO,
            first[-1].session_id,
            f"The first {t.perfect_run} sessions were all rated {_fmt(t.perfect_total)}. Perfect scores from the "
            "start are not proof that all is well; consider inviting less polite feedback.",
            tuple(first),
        )
    ]


def r6_not_completed(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R6: no rating at ``missing_run`` attended sessions in a row, or a declined rating."""
    flags = []
    run: list[SessionRecord] = []
    fired = False
    for r in records:
        if r.attendance is not Attendance.ATTENDED or r.rating is RatingState.PENDING:
            continue  # a missed slot or a link still out neither breaks nor extends the run
        if r.rating is RatingState.DECLINED:
            flags.append(
                Flag(
                    "R6",
                    Severity.REVIEW,
                    r.session_id,
                    "The client declined the rating. Consider asking how the sessions are going for them.",
                    (r,),
                )
            )
        if r.rating in (RatingState.MISSING, RatingState.DECLINED):
            run.append(r)
            if len(run) >= t.missing_run and not fired:
                fired = True
                flags.append(
                    Flag(
                        "R6",
                        Severity.REVIEW,
                        r.session_id,
                        f"No rating for {len(run)} sessions in a row. Not completing the rating can be a sign of "
                        "withdrawal; consider checking in.",
                        tuple(run),
                    )
                )
        else:
            run, fired = [], False
    return flags


def r7_no_show(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R7: a no-show; priority before session ``no_show_priority_before`` or with no next session booked."""
    numbers = session_numbers(records)
    flags = []
    for index, r in enumerate(records):
        if r.attendance is not Attendance.NO_SHOW:
            continue
        early = numbers[r.session_id] < t.no_show_priority_before
        booked = any(later.attendance in (Attendance.ATTENDED, Attendance.SCHEDULED) for later in records[index + 1 :])
        reasons = []
        if early:
            reasons.append(f"it was session {numbers[r.session_id]}; early no-shows are linked to poorer progress")
        if not booked:
            reasons.append("no next session is booked")
        flags.append(
            Flag(
                "R7",
                Severity.PRIORITY if reasons else Severity.REVIEW,
                r.session_id,
                "Missed session" + (" (" + "; ".join(reasons) + ")" if reasons else "") + ". Consider reaching out.",
                (r,),
            )
        )
    return flags


def r8_cancellations(records: Sequence[SessionRecord], t: AlertThresholds) -> list[Flag]:
    """R8: ``cancellations`` or more client cancellations among the last ``cancellation_window`` scheduled sessions."""
    past = [r for r in records if r.attendance is not Attendance.SCHEDULED]
    flags = []
    for index, r in enumerate(past):
        if not r.attendance.client_cancelled:
            continue
        window = past[max(0, index - t.cancellation_window + 1) : index + 1]
        cancelled = tuple(w for w in window if w.attendance.client_cancelled)
        if len(cancelled) >= t.cancellations:
            flags.append(
                Flag(
                    "R8",
                    Severity.REVIEW,
                    r.session_id,
                    f"The client cancelled {len(cancelled)} of the last {len(window)} scheduled sessions. "
                    "Missed sessions can come before an unplanned ending; consider checking in.",
                    cancelled,
                )
            )
    return flags


RULES: dict[str, Rule] = {
    "R1": r1_below_cutoff,
    "R2": r2_low_item,
    "R3": r3_drop,
    "R4": r4_early_below_cutoff,
    "R5": r5_perfect_from_the_start,
    "R6": r6_not_completed,
    "R7": r7_no_show,
    "R8": r8_cancellations,
}


def check_order(records: Sequence[SessionRecord]) -> None:
    """Refuse records out of chronological order or with a session twice: the rules read them as a series."""
    seen: set[int] = set()
    for before, after in itertools.pairwise(records):
        if after.start < before.start:
            raise ValueError(f"records must be in chronological order (session {after.session_id})")
    for r in records:
        if r.session_id in seen:
            raise ValueError(f"session {r.session_id} appears twice")
        seen.add(r.session_id)


def evaluate(records: Sequence[SessionRecord], thresholds: AlertThresholds | None = None) -> list[Flag]:
    """Every flag of R1-R8 over one client's chronological records, by session then rule."""
    t = thresholds or AlertThresholds()
    check_order(records)
    position = {r.session_id: i for i, r in enumerate(records)}
    flags = [flag for rule in RULES.values() for flag in rule(records, t)]
    return sorted(flags, key=lambda f: (position[f.session_id], f.rule))


__all__ = [
    "RULES",
    "Flag",
    "Rule",
    "Severity",
    "check_order",
    "evaluate",
    "r1_below_cutoff",
    "r2_low_item",
    "r3_drop",
    "r4_early_below_cutoff",
    "r5_perfect_from_the_start",
    "r6_not_completed",
    "r7_no_show",
    "r8_cancellations",
    "session_numbers",
]
