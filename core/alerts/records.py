"""What the alert rules read: one plain record per scheduled session of one client, in order."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

ITEM_NAMES = ("bond", "goals", "approach", "overall")
ITEM_LABELS = {"bond": "connection", "goals": "goals and topics", "approach": "way of working", "overall": "overall"}
ITEM_MAX = Decimal(10)
TENTH = Decimal("0.1")


class Attendance(enum.StrEnum):
    """What happened to a scheduled session."""

    ATTENDED = "attended"
    NO_SHOW = "no_show"
    CLIENT_CANCELLED = "client_cancelled"
    CLIENT_CANCELLED_LATE = "client_cancelled_late"
    THERAPIST_CANCELLED = "therapist_cancelled"
    SCHEDULED = "scheduled"  # booked and still ahead

    @property
    def client_cancelled(self) -> bool:
        return self in (Attendance.CLIENT_CANCELLED, Attendance.CLIENT_CANCELLED_LATE)


class RatingState(enum.StrEnum):
    """Where the alliance rating of a session stands."""

    COMPLETED = "completed"
    PENDING = "pending"  # the link is out and still valid
    MISSING = "missing"  # not answered and no longer expected
    DECLINED = "declined"  # the client said they would rather not
    NOT_REQUESTED = "not_requested"  # no rating was asked for (no-show, cancelled, a call too short)


def _score(name: str, value: Decimal | float | int | str) -> Decimal:
    try:
        score = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"{name}: not a number") from None
    if not score.is_finite() or not Decimal(0) <= score <= ITEM_MAX:
        raise ValueError(f"{name}: a score is between 0 and 10")
    if score != score.quantize(TENTH):
        raise ValueError(f"{name}: a score has at most one decimal")
    return score.quantize(TENTH)


@dataclass(frozen=True, slots=True)
class Scores:
    """The four 0-10 items of one rating (one decimal each); the total is their sum, 0-40."""

    bond: Decimal
    goals: Decimal
    approach: Decimal
    overall: Decimal

    def __post_init__(self) -> None:
        for name in ITEM_NAMES:
            object.__setattr__(self, name, _score(name, getattr(self, name)))

    @classmethod
    def of(cls, bond: float | str, goals: float | str, approach: float | str, overall: float | str) -> Scores:
        """Build from plain numbers (e.g. ``Scores.of(9.5, 9, 8.7, 9.1)``)."""
        return cls(Decimal(str(bond)), Decimal(str(goals)), Decimal(str(approach)), Decimal(str(overall)))

    @property
    def items(self) -> dict[str, Decimal]:
        return {name: getattr(self, name) for name in ITEM_NAMES}

    @property
    def total(self) -> Decimal:
        return self.bond + self.goals + self.approach + self.overall


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """One scheduled session of the client: when, what happened, and its rating if there is one.

    ``rating`` defaults from the rest: completed with scores, missing for an attended session
    without them, not requested otherwise.
    """

    session_id: int
    start: datetime
    attendance: Attendance = Attendance.ATTENDED
    scores: Scores | None = None
    rating: RatingState | None = field(default=None)

    def __post_init__(self) -> None:
        if self.start.tzinfo is None:
            raise ValueError(f"session {self.session_id}: start must be an aware datetime")
        if self.scores is not None and self.attendance is not Attendance.ATTENDED:
            raise ValueError(f"session {self.session_id}: only an attended session has a rating")
        if self.scores is not None and self.rating not in (None, RatingState.COMPLETED):
            raise ValueError(f"session {self.session_id}: a session with scores has a completed rating")
        if self.scores is None and self.rating is RatingState.COMPLETED:
            raise ValueError(f"session {self.session_id}: a completed rating needs its scores")
        if self.rating is None:
            if self.scores is not None:
                state = RatingState.COMPLETED
            elif self.attendance is Attendance.ATTENDED:
                state = RatingState.MISSING
            else:
                state = RatingState.NOT_REQUESTED
            object.__setattr__(self, "rating", state)

    @property
    def total(self) -> Decimal | None:
        return self.scores.total if self.scores is not None else None


__all__ = ["ITEM_LABELS", "ITEM_NAMES", "Attendance", "RatingState", "Scores", "SessionRecord"]
