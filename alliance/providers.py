"""Wiring between stored connections and provider plugins."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

from alliance.settings import Settings
from core.mirror import ConnectionView
from integrations.base import CalendarProvider, ProviderContext, ProviderRegistry


@lru_cache(maxsize=1)
def registry() -> ProviderRegistry:
    """Providers installed through the ``alliance.integrations`` entry points (loaded once)."""
    return ProviderRegistry.from_entry_points()


def context_for(settings: Settings, therapist_timezone: str, now: datetime | None = None) -> ProviderContext:
    return ProviderContext(
        default_timezone=therapist_timezone,
        now=now or datetime.now(UTC),
        window_past=timedelta(days=settings.window_past_days),
        window_future=timedelta(days=settings.window_future_days),
    )


def provider_for(connection: ConnectionView, context: ProviderContext) -> CalendarProvider:
    return registry().get(connection.provider).from_settings(connection.settings, context)
