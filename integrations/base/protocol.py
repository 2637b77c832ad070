"""The calendar provider contract every integration implements."""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

from core.sync.types import ChangePage


class Capability(enum.StrEnum):
    """What a provider can do beyond listing changes; declared, never probed."""

    READ_ONLY = "read-only"  # Alliance never writes to this source
    PUSH = "push"  # the source notifies changes (webhooks / channels)
    WRITE_BACK = "write-back"  # Alliance may write its own fields back (video link, marker)


@dataclass(frozen=True, slots=True)
class ProviderContext:
    """What a provider needs from its surroundings, handed in rather than read from globals."""

    default_timezone: str = "UTC"
    now: datetime = field(default_factory=lambda: datetime.now(UTC))
    window_past: timedelta = timedelta(days=60)
    window_future: timedelta = timedelta(days=365)
    # Operator-level options per provider name (API base URLs, the OAuth client), taken from the
    # app's settings by the composition root: integrations never read the environment themselves.
    options: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    # Stores a connection's settings again after the provider changed them itself (a refreshed
    # OAuth token); None when nothing persists them (tests, one-off listings).
    save_settings: Callable[[dict[str, Any]], None] | None = None
    # Runs ``step(settings as stored now)`` holding the connection's lock across processes and
    # stores what it returns (None: nothing to store); returns the settings stored after. How one
    # process at a time renews a token shared by several (core.mirror.update_connection_settings_locked).
    # None where nothing persists the settings.
    update_settings_locked: Callable[[Callable[[dict[str, Any]], dict[str, Any] | None]], dict[str, Any]] | None = None

    def options_for(self, provider: str) -> Mapping[str, Any]:
        return self.options.get(provider, {})

    @property
    def window(self) -> tuple[datetime, datetime]:
        return (self.now - self.window_past, self.now + self.window_future)


class InvalidSettings(ValueError):
    """Connection settings a provider cannot use; the message says what to fix."""


@runtime_checkable
class CalendarProvider(Protocol):
    """A calendar source: lists changes since a cursor, page by page.

    ``list_changes(None)`` is a complete listing (pages flagged ``complete``); a cursor the source
    no longer accepts raises :class:`core.sync.types.CursorExpired`.
    """

    name: ClassVar[str]
    capabilities: ClassVar[frozenset[Capability]]

    @classmethod
    def normalize_settings(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate user-given settings at connect time; raise :class:`InvalidSettings`."""
        ...

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: ProviderContext) -> Self:
        """Build a provider for one connection."""
        ...

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """Yield pages of changes since ``cursor``."""
        ...
