"""The Outlook provider passes the provider contract against the emulator, through the real MSAL."""

from __future__ import annotations

from datetime import datetime

import pytest

from integrations.base import Capability, ProviderRegistry
from integrations.base.contract import CalendarProviderContract
from integrations.outlook import OutlookProvider
from tests.integrations.outlook.world import OutlookWorld, timed


class OutlookHarness:
    """A therapist editing their Outlook calendar: every edit goes through the emulator's control API."""

    def __init__(self, world: OutlookWorld) -> None:
        self.world = world
        self.ids: dict[str, str] = {}

    def provider(self) -> OutlookProvider:
        return self.world.provider()

    def add_event(self, uid: str, start: datetime, end: datetime, title: str) -> None:
        minutes = int((end - start).total_seconds() // 60)
        event = self.world.seed({"iCalUId": uid, "subject": title, **timed(start, minutes)})
        self.ids[uid] = event["id"]

    def move_event(self, uid: str, start: datetime, end: datetime) -> None:
        minutes = int((end - start).total_seconds() // 60)
        self.world.state.update_event(self.ids[uid], timed(start, minutes))

    def rename_event(self, uid: str, title: str) -> None:
        self.world.state.update_event(self.ids[uid], {"subject": title})

    def delete_event(self, uid: str) -> None:
        self.world.state.delete_event(self.ids[uid])

    def expire_cursor(self) -> bool:
        return bool(self.world.state.expire_delta_tokens() >= 0)


class TestOutlookProvider(CalendarProviderContract):
    @pytest.fixture
    def harness(self, outlook: OutlookWorld) -> OutlookHarness:
        return OutlookHarness(outlook)


def test_outlook_is_discovered_through_its_entry_point() -> None:
    assert ProviderRegistry.from_entry_points().get("outlook") is OutlookProvider


def test_only_implemented_capabilities_are_declared() -> None:
    # Write-back of the join link (integrations.outlook.writeback); subscriptions are kept by
    # alliance.outlook_push rather than the generic push-channel job (see its docstring), so no PUSH.
    assert OutlookProvider.capabilities == frozenset({Capability.WRITE_BACK})
