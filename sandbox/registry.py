"""The emulators ``alliance sandbox`` can start, by name.

Each entry starts one emulator on a loopback port and says how to aim Alliance at it (the
``ALLIANCE_*`` variables) and what to try. Adding an emulator is one line in :data:`SANDBOXES`
(``Sandbox(name, title, start)``), with a ``start(host, port, workdir)`` context manager yielding a
:class:`SandboxInfo`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

__all__ = ["SANDBOXES", "Sandbox", "SandboxInfo", "sandbox_named"]


@dataclass(frozen=True)
class SandboxInfo:
    """A started emulator: where it listens, the variables that aim Alliance at it, and what to try."""

    name: str
    base_url: str
    env: dict[str, str]
    steps: list[str] = field(default_factory=list)


Starter = Callable[[str, int, Path], AbstractContextManager[SandboxInfo]]


@dataclass(frozen=True)
class Sandbox:
    name: str
    title: str
    start: Starter


# Where the emulators push (pings, notifications, webhooks): `alliance serve` at its default
# address, which the emulators accept over http:// on loopback; loopback kept out of any proxy.
_PUSHES_TO_SERVE = {"ALLIANCE_PUBLIC_URL": "http://127.0.0.1:8000", "NO_PROXY": "127.0.0.1,localhost"}


def _tomorrow_at_ten(zone: str) -> datetime:
    """Where the sample calendars start: plain titles, as a therapist's own calendar might have."""
    return datetime.now(ZoneInfo(zone)).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=1)


@contextmanager
def _google(host: str, port: int, workdir: Path) -> Iterator[SandboxInfo]:
    from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GoogleState, run_google_emulator

    zone = "Europe/Madrid"
    state = GoogleState(time_zone=zone)
    with run_google_emulator(state, host=host, port=port) as emu:
        # A small calendar to start from; plain titles, as a therapist's own calendar might have.
        tomorrow = _tomorrow_at_ten(zone)

        def slot(days: int, hour: int) -> dict[str, dict[str, str]]:
            start = tomorrow.replace(hour=hour) + timedelta(days=days)
            end = start + timedelta(minutes=50)
            return {
                "start": {"dateTime": start.isoformat(), "timeZone": zone},
                "end": {"dateTime": end.isoformat(), "timeZone": zone},
            }

        first = state.seed_event("primary", {"summary": "Session", **slot(0, 10)})
        state.seed_event("primary", {"summary": "Supervision", **slot(2, 16)})
        state.seed_event(
            "primary", {"summary": "Weekly session", "recurrence": ["RRULE:FREQ=WEEKLY;COUNT=8"], **slot(1, 18)}
        )
        tokens = state.issue_tokens()
        token_file = workdir / "google-token.json"
        token_file.write_text(
            json.dumps(
                {
                    "type": "authorized_user",
                    "client_id": DEFAULT_CLIENT_ID,
                    "client_secret": DEFAULT_CLIENT_SECRET,
                    "refresh_token": tokens["refresh_token"],
                    "token": tokens["access_token"],
                    "expiry": (datetime.now(UTC) + timedelta(seconds=int(tokens["expires_in"]))).isoformat(),
                }
            )
        )
        token_file.chmod(0o600)
        control = f"{emu.base_url}/_emulator/calendars/primary/events"
        moved = (tomorrow + timedelta(hours=3)).isoformat()
        yield SandboxInfo(
            name="google",
            base_url=emu.base_url,
            env={
                "ALLIANCE_GOOGLE_API_URL": emu.api_endpoint,
                "ALLIANCE_GOOGLE_AUTH_URL": emu.authorize_url,
                "ALLIANCE_GOOGLE_TOKEN_URL": emu.token_uri,
                "ALLIANCE_GOOGLE_CLIENT_ID": DEFAULT_CLIENT_ID,
                "ALLIANCE_GOOGLE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                **_PUSHES_TO_SERVE,
            },
            steps=[
                f"alliance connect google --token-file {token_file}   # or without it: the real sign-in flow",
                "alliance serve   # the worker opens a push channel and follows edits",
                f"curl -s -X POST {control}/{first['id']}/move -H 'Content-Type: application/json' "
                f"""-d '{{"start": {{"dateTime": "{moved}", "timeZone": "{zone}"}}}}'""",
                f"curl -s {control}   # everything the emulator holds; see sandbox/README.md for the control API",
                "alliance events   # the mirror, after the push ping's sync",
            ],
        )


@contextmanager
def _outlook(host: str, port: int, workdir: Path) -> Iterator[SandboxInfo]:
    from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, OutlookState, run_outlook_emulator
    from sandbox.outlook.control import PREFIX

    zone = "Europe/Madrid"
    state = OutlookState()
    with run_outlook_emulator(state, host=host, port=port) as emu:
        tomorrow = _tomorrow_at_ten(zone)

        def at(days: int, hour: int) -> datetime:
            return tomorrow.replace(hour=hour) + timedelta(days=days)

        def slot(start: datetime) -> dict[str, dict[str, str]]:
            # Graph's dateTimeTimeZone: a wall-clock time and the zone it is in.
            end = start + timedelta(minutes=50)
            return {
                "start": {"dateTime": start.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone},
                "end": {"dateTime": end.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": zone},
            }

        first = state.seed_event({"subject": "Session", **slot(at(0, 10))})
        state.seed_event({"subject": "Supervision", **slot(at(2, 16))})
        weekly_start = at(1, 18)
        state.seed_event(
            {
                "subject": "Weekly session",
                **slot(weekly_start),
                "recurrence": {
                    "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": [weekly_start.strftime("%A").lower()]},
                    "range": {
                        "type": "numbered",
                        "startDate": weekly_start.date().isoformat(),
                        "numberOfOccurrences": 8,
                    },
                },
            }
        )
        token_file = workdir / "outlook-refresh-token"
        token_file.write_text(state.issue_tokens()["refresh_token"] + "\n")
        token_file.chmod(0o600)
        moved = json.dumps(slot(at(0, 13)))
        ca = str(emu.ca_file)
        control = f"{emu.base_url}{PREFIX}/events"
        yield SandboxInfo(
            name="outlook",
            base_url=emu.base_url,
            env={
                "ALLIANCE_MS_AUTHORITY": emu.authority,
                "ALLIANCE_GRAPH_API_URL": emu.graph_url,
                "ALLIANCE_MS_CLIENT_ID": DEFAULT_CLIENT_ID,
                "ALLIANCE_MS_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
                # HTTPS with a certificate of its own test CA (made at start, removed at the end).
                "ALLIANCE_MS_CA_BUNDLE": ca,
                **_PUSHES_TO_SERVE,
            },
            steps=[
                f"alliance connect outlook --refresh-token-file {token_file}   # or without it: the sign-in flow",
                "alliance serve   # within a minute the worker subscribes to changes and follows edits",
                f"curl -s --cacert {ca} -X PATCH {control}/{first['id']} -H 'Content-Type: application/json' "
                f"-d '{moved}'",
                "alliance events   # the mirror, after the notification's sync",
            ],
        )


@contextmanager
def _zoom(host: str, port: int, workdir: Path) -> Iterator[SandboxInfo]:
    from sandbox.zoom import (
        DEFAULT_ACCOUNT_ID,
        DEFAULT_CLIENT_ID,
        DEFAULT_CLIENT_SECRET,
        DEFAULT_WEBHOOK_SECRET,
        ZoomState,
        run_zoom_emulator,
    )
    from sandbox.zoom.app import CONTROL_PREFIX

    state = ZoomState()
    # Zoom's event subscription: signed webhooks to `alliance serve` (meeting started, ended, ...).
    state.settings.webhook_url = f"{_PUSHES_TO_SERVE['ALLIANCE_PUBLIC_URL']}/webhooks/zoom"
    with run_zoom_emulator(state, host=host, port=port) as emu:
        yield SandboxInfo(
            name="zoom",
            base_url=emu.base_url,
            env={
                "ALLIANCE_ZOOM_API_URL": emu.api_url,
                "ALLIANCE_ZOOM_OAUTH_URL": emu.base_url,
                "ALLIANCE_ZOOM_WEBHOOK_SECRET": DEFAULT_WEBHOOK_SECRET,
                "NO_PROXY": _PUSHES_TO_SERVE["NO_PROXY"],
            },
            steps=[
                "alliance clients add --name 'Sample Client' --modality online   # prints the client's code",
                "alliance assign UID --client CODE   # UID: a session of a calendar connected above "
                "('alliance events --json')",
                f"alliance connect zoom --account-id {DEFAULT_ACCOUNT_ID} --client-id {DEFAULT_CLIENT_ID} "
                f"--client-secret {DEFAULT_CLIENT_SECRET} --user {state.default_user.email}"
                "   # makes the online sessions' meetings",
                "alliance sessions --json   # each session's video link; 'alliance serve' keeps them in step",
                f"curl -s -X POST {emu.base_url}{CONTROL_PREFIX}/meetings/MEETING_ID/start   # Zoom's "
                "meeting.started webhook to alliance serve (MEETING_ID: the number in the join link)",
                f"curl -s {emu.base_url}{CONTROL_PREFIX}/state   # the meetings the emulator holds",
            ],
        )


SANDBOXES: tuple[Sandbox, ...] = (
    Sandbox("google", "Google Calendar API v3 + Google OAuth", _google),
    Sandbox("outlook", "Microsoft Graph calendar + Microsoft identity platform", _outlook),
    Sandbox("zoom", "Zoom API + OAuth + webhooks", _zoom),
)


def sandbox_named(name: str) -> Sandbox:
    for sandbox in SANDBOXES:
        if sandbox.name == name:
            return sandbox
    known = ", ".join(s.name for s in SANDBOXES)
    raise LookupError(f"no emulator named {name!r} (known: {known})")
