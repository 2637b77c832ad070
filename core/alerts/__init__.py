"""Advisory alert rules R1-R8 over a client's series of sessions and alliance ratings (pure functions)."""

from core.alerts.records import ITEM_LABELS, ITEM_NAMES, Attendance, RatingState, Scores, SessionRecord
from core.alerts.rules import RULES, Flag, Severity, evaluate, session_numbers
from core.alerts.series import DEFAULT_RATING_WINDOW, records_from_sessions
from core.alerts.thresholds import AlertThresholds

__all__ = [
    "DEFAULT_RATING_WINDOW",
    "ITEM_LABELS",
    "ITEM_NAMES",
    "RULES",
    "AlertThresholds",
    "Attendance",
    "Flag",
    "RatingState",
    "Scores",
    "SessionRecord",
    "Severity",
    "evaluate",
    "records_from_sessions",
    "session_numbers",
]
