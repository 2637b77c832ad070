"""The ICS provider passes the provider contract, reading a real .ics file that each edit rewrites."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import icalendar
import pytest

from integrations.base import ProviderRegistry
from integrations.base.contract import CalendarProviderContract
from integrations.base.protocol import ProviderContext
from integrations.ics import IcsProvider


class IcsHarness:
    """A therapist's calendar app publishing an .ics file: every edit rewrites the whole file."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "calendar.ics"
        self.events: dict[str, tuple[datetime, datetime, str]] = {}
        self._write()

    def provider(self) -> IcsProvider:
        return IcsProvider.from_settings({"source": str(self.path)}, ProviderContext())

    def _write(self) -> None:
        calendar = icalendar.Calendar()
        calendar.add("prodid", "-//Alliance tests//contract harness//EN")
        calendar.add("version", "2.0")
        for uid, (start, end, title) in self.events.items():
            event = icalendar.Event()
            event.add("uid", uid)
            event.add("dtstamp", datetime(2026, 1, 1, tzinfo=UTC))
            event.add("dtstart", start)
            event.add("dtend", end)
            event.add("summary", title)
            calendar.add_component(event)
        self.path.write_bytes(calendar.to_ical())

    def add_event(self, uid: str, start: datetime, end: datetime, title: str) -> None:
        self.events[uid] = (start, end, title)
        self._write()

    def move_event(self, uid: str, start: datetime, end: datetime) -> None:
        self.events[uid] = (start, end, self.events[uid][2])
        self._write()

    def rename_event(self, uid: str, title: str) -> None:
        start, end, _ = self.events[uid]
        self.events[uid] = (start, end, title)
        self._write()

    def delete_event(self, uid: str) -> None:
        del self.events[uid]
        self._write()

    def expire_cursor(self) -> bool:
        return False  # an ICS cursor never expires: an unusable one just means "list everything"


class TestIcsProvider(CalendarProviderContract):
    @pytest.fixture
    def harness(self, tmp_path: Path) -> IcsHarness:
        return IcsHarness(tmp_path)


def test_ics_is_discovered_through_its_entry_point() -> None:
    assert ProviderRegistry.from_entry_points().get("ics") is IcsProvider
