"""Attendance facts a calendar does not hold: who cancelled a session (alert rule R8)."""

from core.attendance.service import (
    CancellationView,
    CancelledBy,
    NotCancelled,
    cancellations,
    parse_cancelled_by,
    record_cancellation,
    who_cancelled,
)

__all__ = [
    "CancellationView",
    "CancelledBy",
    "NotCancelled",
    "cancellations",
    "parse_cancelled_by",
    "record_cancellation",
    "who_cancelled",
]
