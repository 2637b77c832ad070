"""Building blocks of the Google provider tests: the emulator as the therapist's Google account.

One emulator serves a whole test module (starting uvicorn per test would dominate the run); the
``google`` fixture resets its world before each test. Providers are built exactly as Alliance
builds them (``GoogleProvider.build`` with a context carrying the operator options), with a
retry policy whose ``sleep`` records the waits instead of sleeping.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from integrations.base.protocol import ProviderContext
from integrations.google import GoogleProvider
from integrations.google.client import RetryPolicy
from integrations.google.settings import SCOPES
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningEmulator
from sandbox.google.state import Settings as EmulatorSettings

MADRID = "Europe/Madrid"
EVENTS_PATH = "/calendar/v3/calendars/primary/events"


def options_for(emu: RunningEmulator) -> dict[str, Any]:
    return {
        "api_url": emu.api_endpoint,
        "auth_url": emu.authorize_url,
        "token_url": emu.token_uri,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
    }


def env_for(emu: RunningEmulator) -> dict[str, str]:
    """``ALLIANCE_GOOGLE_*`` variables aiming the ``alliance`` command at the emulator."""
    return {
        "ALLIANCE_GOOGLE_API_URL": emu.api_endpoint,
        "ALLIANCE_GOOGLE_AUTH_URL": emu.authorize_url,
        "ALLIANCE_GOOGLE_TOKEN_URL": emu.token_uri,
        "ALLIANCE_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
        "ALLIANCE_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "NO_PROXY": "127.0.0.1,localhost",
    }


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A UTC instant ``day`` days from today (inside the default window)."""
    base = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return base + timedelta(days=day)


def timed(start: datetime, minutes: int = 50, tz: str | None = None) -> dict[str, Any]:
    end = start + timedelta(minutes=minutes)
    if tz is None:
        return {"start": {"dateTime": start.isoformat()}, "end": {"dateTime": end.isoformat()}}
    return {
        "start": {"dateTime": start.isoformat(), "timeZone": tz},
        "end": {"dateTime": end.isoformat(), "timeZone": tz},
    }


@dataclass
class GoogleWorld:
    """The emulator plus the tokens of one consented grant and a provider factory."""

    emu: RunningEmulator
    tokens: dict[str, Any] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> Any:
        return self.emu.state

    def reset(self, seed: int | None = None) -> None:
        """A fresh account; ``seed`` makes ids and tokens repeat (for replayed hypothesis examples)."""
        self.state.reset()
        self.state.rng = random.Random(seed)
        defaults = EmulatorSettings()
        for f in dataclasses.fields(EmulatorSettings):
            setattr(self.state.settings, f.name, getattr(defaults, f.name))
        self.tokens = self.state.issue_tokens(scopes=list(SCOPES))
        self.waits.clear()
        self.saved.clear()

    def settings(self, **extra: Any) -> dict[str, Any]:
        return {
            "refresh_token": self.tokens["refresh_token"],
            "token": self.tokens["access_token"],
            "client_id": DEFAULT_CLIENT_ID,
            **extra,
        }

    def context(
        self, *, now: datetime | None = None, save: Callable[[dict[str, Any]], None] | None = None
    ) -> ProviderContext:
        return ProviderContext(
            default_timezone=MADRID,
            now=now or datetime.now(UTC),
            options={"google": options_for(self.emu)},
            save_settings=save if save is not None else self.saved.append,
        )

    def retry(self, **overrides: Any) -> RetryPolicy:
        return RetryPolicy(sleep=self.waits.append, random=lambda: 0.5, **overrides)

    def provider(
        self,
        settings: dict[str, Any] | None = None,
        *,
        now: datetime | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 10.0,
        **extra: Any,
    ) -> GoogleProvider:
        return GoogleProvider.build(
            settings or self.settings(**extra), self.context(now=now), retry=retry or self.retry(), timeout=timeout
        )

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.state.seed_event("primary", body)
        return result

    def list_requests(self) -> list[dict[str, Any]]:
        requests: list[dict[str, Any]] = self.state.requests(EVENTS_PATH, "GET")
        return requests
