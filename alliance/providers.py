"""Wiring between stored connections and provider plugins."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any

from alliance.settings import Settings
from core.mirror import ConnectionView, update_connection_settings_locked
from core.store import Store
from integrations.base import CalendarProvider, ProviderContext, ProviderRegistry


@lru_cache(maxsize=1)
def registry() -> ProviderRegistry:
    """Providers installed through the ``alliance.integrations`` entry points (loaded once)."""
    return ProviderRegistry.from_entry_points()


def provider_options(settings: Settings) -> dict[str, dict[str, Any]]:
    """Operator-level options each provider gets through its context (never from the environment)."""
    secret = settings.google_client_secret
    ms_secret = settings.ms_client_secret
    return {
        "google": {
            "api_url": settings.google_api_url,
            "auth_url": settings.google_auth_url,
            "token_url": settings.google_token_url,
            "client_id": settings.google_client_id,
            "client_secret": secret.get_secret_value() if secret is not None else None,
        },
        "outlook": {
            "authority": settings.ms_authority,
            "graph_url": settings.graph_api_url,
            "client_id": settings.ms_client_id,
            "client_secret": ms_secret.get_secret_value() if ms_secret is not None else None,
            "ca_bundle": str(settings.ms_ca_bundle) if settings.ms_ca_bundle else None,
            "slots_database_url": settings.effective_database_url,  # per-mailbox limit across processes
        },
    }


def context_for(settings: Settings, therapist_timezone: str, now: datetime | None = None) -> ProviderContext:
    return ProviderContext(
        default_timezone=therapist_timezone,
        now=now or datetime.now(UTC),
        window_past=timedelta(days=settings.window_past_days),
        window_future=timedelta(days=settings.window_future_days),
        options=provider_options(settings),
    )


def provider_for(
    connection: ConnectionView,
    context: ProviderContext,
    *,
    save_settings: Callable[[dict[str, Any]], None] | None = None,
    store: Store | None = None,
) -> CalendarProvider:
    """The provider of one stored connection; ``save_settings`` persists settings it changes itself.

    With ``store``, the provider may also renew a token under the connection's lock in the database
    (``ProviderContext.update_settings_locked``), so worker processes refresh it one at a time.
    """
    if save_settings is not None:
        context = dataclasses.replace(context, save_settings=save_settings)
    if store is not None:
        connection_id = connection.id

        def locked(step: Callable[[dict[str, Any]], dict[str, Any] | None]) -> dict[str, Any]:
            return update_connection_settings_locked(store, connection_id, step)

        context = dataclasses.replace(context, update_settings_locked=locked)
    return registry().get(connection.provider).from_settings(connection.settings, context)
