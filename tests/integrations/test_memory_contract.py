"""The in-memory fake passes the provider contract."""

from __future__ import annotations

from datetime import datetime

import pytest

from core.sync import OccurrenceKey, RemoteOccurrence
from integrations.base import MemoryCalendar, MemoryProvider
from integrations.base.contract import CalendarProviderContract


class MemoryHarness:
    def __init__(self) -> None:
        self.calendar = MemoryCalendar()

    def provider(self) -> MemoryProvider:
        return MemoryProvider(self.calendar, page_size=2)  # small pages exercise paging

    def add_event(self, uid: str, start: datetime, end: datetime, title: str) -> None:
        self.calendar.put(RemoteOccurrence(key=OccurrenceKey(uid), start=start, end=end, title=title))

    def _replace(self, uid: str, **changes: object) -> None:
        old = self.calendar.items[OccurrenceKey(uid)]
        fields = {f: getattr(old, f) for f in old.__dataclass_fields__}
        fields.update(changes)
        self.calendar.put(RemoteOccurrence(**fields))  # type: ignore[arg-type]

    def move_event(self, uid: str, start: datetime, end: datetime) -> None:
        self._replace(uid, start=start, end=end)

    def rename_event(self, uid: str, title: str) -> None:
        self._replace(uid, title=title)

    def delete_event(self, uid: str) -> None:
        self.calendar.delete(OccurrenceKey(uid))

    def expire_cursor(self) -> bool:
        self.calendar.expire_cursors()
        return True


class TestMemoryProvider(CalendarProviderContract):
    @pytest.fixture
    def harness(self) -> MemoryHarness:
        return MemoryHarness()
