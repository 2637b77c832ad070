"""The emulators ``alliance sandbox`` can start, by name.

Each entry starts one emulator on a loopback port and says how to aim Alliance at it (the
``ALLIANCE_*`` variables) and what to try. Adding an emulator is one line in :data:`SANDBOXES`
(e.g. ``Sandbox("outlook", "Microsoft Graph + identity", outlook.start_for_cli)``), with a
``start(host, port, workdir)`` context manager yielding a :class:`SandboxInfo`.
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


@contextmanager
def _google(host: str, port: int, workdir: Path) -> Iterator[SandboxInfo]:
    from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, GoogleState, run_google_emulator

    zone = "Europe/Madrid"
    state = GoogleState(time_zone=zone)
    with run_google_emulator(state, host=host, port=port) as emu:
        # A small calendar to start from; plain titles, as a therapist's own calendar might have.
        tomorrow = datetime.now(ZoneInfo(zone)).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=1)

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
                # Push pings go to `alliance serve` (the emulator accepts http:// on loopback).
                "ALLIANCE_PUBLIC_URL": "http://127.0.0.1:8000",
                "NO_PROXY": "127.0.0.1,localhost",
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


SANDBOXES: tuple[Sandbox, ...] = (Sandbox("google", "Google Calendar API v3 + Google OAuth", _google),)


def sandbox_named(name: str) -> Sandbox:
    for sandbox in SANDBOXES:
        if sandbox.name == name:
            return sandbox
    known = ", ".join(s.name for s in SANDBOXES)
    raise LookupError(f"no emulator named {name!r} (known: {known})")
