"""The Google provider passes the provider contract against the emulator, with the real client libraries."""

from __future__ import annotations

from datetime import datetime

import pytest

from integrations.base import Capability, ProviderRegistry
from integrations.base.contract import CalendarProviderContract
from integrations.base.push import PushSource
from integrations.base.writeback import JoinLinkWriter
from integrations.google import GoogleProvider
from tests.integrations.google_world import GoogleWorld


class GoogleHarness:
    """A therapist editing their Google Calendar: every edit goes through the emulator's control API."""

    def __init__(self, world: GoogleWorld) -> None:
        self.world = world
        self.ids: dict[str, str] = {}

    def provider(self) -> GoogleProvider:
        return self.world.provider()

    def add_event(self, uid: str, start: datetime, end: datetime, title: str) -> None:
        event = self.world.seed(
            {
                "iCalUID": uid,  # an imported event: its UID is not Google's "<id>@google.com"
                "summary": title,
                "start": {"dateTime": start.isoformat()},
                "end": {"dateTime": end.isoformat()},
            }
        )
        self.ids[uid] = event["id"]

    def move_event(self, uid: str, start: datetime, end: datetime) -> None:
        self.world.state.move_event(
            "primary", self.ids[uid], {"dateTime": start.isoformat()}, {"dateTime": end.isoformat()}
        )

    def rename_event(self, uid: str, title: str) -> None:
        self.world.state.retitle_event("primary", self.ids[uid], title)

    def delete_event(self, uid: str) -> None:
        self.world.state.cancel_event("primary", self.ids[uid])

    def expire_cursor(self) -> bool:
        return bool(self.world.state.expire_sync_tokens() >= 0)


class TestGoogleProvider(CalendarProviderContract):
    @pytest.fixture
    def harness(self, google: GoogleWorld) -> GoogleHarness:
        return GoogleHarness(google)


def test_google_is_discovered_through_its_entry_point() -> None:
    assert ProviderRegistry.from_entry_points().get("google") is GoogleProvider


def test_only_implemented_capabilities_are_declared() -> None:
    # Push: events.watch channels (tests/integrations/test_google_push.py), the PushSource role.
    # Write-back: join links (tests/integrations/test_google_writeback.py), the JoinLinkWriter role.
    assert GoogleProvider.capabilities == frozenset({Capability.PUSH, Capability.WRITE_BACK})
    assert issubclass(GoogleProvider, PushSource) and issubclass(GoogleProvider, JoinLinkWriter)
