"""Building blocks of the Outlook provider tests: the emulator as the therapist's Microsoft 365 account.

One emulator serves a whole test module; the ``outlook`` fixture resets it before each test and
signs in once with MSAL's real code flow (the connection's token cache comes from that). Providers
are built exactly as Alliance builds them (``OutlookProvider.build`` with a context carrying the
operator options), with a retry policy whose ``sleep`` records the waits instead of sleeping.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from integrations.base.protocol import ProviderContext
from integrations.outlook import OutlookProvider, oauth
from integrations.outlook.client import RetryPolicy
from integrations.outlook.settings import OutlookOptions
from integrations.outlook.transport import identity_session
from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningEmulator

MADRID = "Europe/Madrid"
BERLIN_WINDOWS = "W. Europe Standard Time"
DELTA_PATH = "/v1.0/me/calendarView/delta"


def options_for(emu: RunningEmulator) -> dict[str, Any]:
    return {
        "authority": emu.authority,
        "graph_url": emu.graph_url,
        "client_id": DEFAULT_CLIENT_ID,
        "client_secret": DEFAULT_CLIENT_SECRET,
        "ca_bundle": str(emu.ca_file),
    }


def env_for(emu: RunningEmulator) -> dict[str, str]:
    """``ALLIANCE_MS_*`` variables aiming the ``alliance`` command at the emulator."""
    return {
        "ALLIANCE_MS_AUTHORITY": emu.authority,
        "ALLIANCE_GRAPH_API_URL": emu.graph_url,
        "ALLIANCE_MS_CLIENT_ID": DEFAULT_CLIENT_ID,
        "ALLIANCE_MS_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
        "ALLIANCE_MS_CA_BUNDLE": str(emu.ca_file),
        "NO_PROXY": "127.0.0.1,localhost",
    }


def connect(emu: RunningEmulator) -> dict[str, Any]:
    """Connection settings from MSAL's code flow against the emulator (the browser step followed by hand)."""
    options = OutlookOptions.from_mapping(options_for(emu))
    sign_in = oauth.begin(options, "http://127.0.0.1:9/callback")
    answer = identity_session(str(emu.ca_file)).get(sign_in.url, allow_redirects=False)
    params = dict(parse_qsl(urlsplit(answer.headers["location"]).query))
    return oauth.finish(options, sign_in, params)


def at(day: int, hour: int = 10, minute: int = 0) -> datetime:
    """A UTC instant ``day`` days from today (inside the default window)."""
    base = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    return base + timedelta(days=day)


def graph_time(moment: datetime, zone: str = "UTC") -> dict[str, str]:
    """A dateTimeTimeZone in ``zone`` (a Windows or IANA name), as a calendar app writes it."""
    from zoneinfo import ZoneInfo

    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    local = moment.astimezone(ZoneInfo(WINDOWS_TO_OLSON.get(zone, zone))) if zone != "UTC" else moment
    return {"dateTime": local.replace(tzinfo=None).isoformat(), "timeZone": zone}


def timed(start: datetime, minutes: int = 50, zone: str = "UTC") -> dict[str, Any]:
    return {"start": graph_time(start, zone), "end": graph_time(start + timedelta(minutes=minutes), zone)}


def weekly(start: datetime, count: int, zone: str = BERLIN_WINDOWS, minutes: int = 50) -> dict[str, Any]:
    from zoneinfo import ZoneInfo

    from icalendar.timezone.windows_to_olson import WINDOWS_TO_OLSON

    local = start.astimezone(ZoneInfo(WINDOWS_TO_OLSON.get(zone, zone)))
    day = local.strftime("%A").lower()
    return {
        **timed(start, minutes, zone),
        "recurrence": {
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [day]},
            "range": {"type": "numbered", "startDate": local.date().isoformat(), "numberOfOccurrences": count},
        },
    }


@dataclass
class OutlookWorld:
    """The emulator plus one connected account and a provider factory."""

    emu: RunningEmulator
    connection: dict[str, Any] = field(default_factory=dict)
    waits: list[float] = field(default_factory=list)
    saved: list[dict[str, Any]] = field(default_factory=list)

    @property
    def state(self) -> Any:
        return self.emu.state

    def reset(self, seed: int | None = None) -> None:
        """A fresh account; ``seed`` makes ids and tokens repeat (for replayed hypothesis examples)."""
        self.state.reset()
        self.state.rng = random.Random(seed)
        self.connection = connect(self.emu)
        self.waits.clear()
        self.saved.clear()

    def settings(self) -> dict[str, Any]:
        return dict(self.connection)

    def context(
        self, *, now: datetime | None = None, save: Callable[[dict[str, Any]], None] | None = None
    ) -> ProviderContext:
        return ProviderContext(
            default_timezone=MADRID,
            now=now or datetime.now(UTC),
            options={"outlook": options_for(self.emu)},
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
    ) -> OutlookProvider:
        return OutlookProvider.build(
            settings or self.settings(), self.context(now=now), retry=retry or self.retry(), timeout=timeout
        )

    def seed(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.state.seed_event(body)
        return result

    def graph_requests(self, path: str = "/v1.0/") -> list[Any]:
        return list(self.state.requests(path))
