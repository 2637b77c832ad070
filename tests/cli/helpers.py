"""Building blocks of CLI tests: iCalendar text and times relative to now."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Run = Callable[..., subprocess.CompletedProcess[str]]


def _ics(events: str, tz_header: str = "") -> str:
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Alliance tests//EN\r\n" + tz_header + events + "END:VCALENDAR\r\n"
    )


def _event(uid: str, start: datetime, minutes: int = 50, summary: str = "Session", extra: str = "") -> str:
    fmt = "%Y%m%dT%H%M%SZ"
    end = start + timedelta(minutes=minutes)
    return (
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{start.strftime(fmt)}\r\nDTEND:{end.strftime(fmt)}\r\nSUMMARY:{summary}\r\n{extra}END:VEVENT\r\n"
    )


def _soon(days: int, hour: int = 9) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=hour, minute=0, second=0, microsecond=0)
