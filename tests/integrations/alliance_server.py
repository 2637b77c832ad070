"""Alliance's real web app on a loopback port (uvicorn in a thread), aimed at the Google emulator.

The socket is bound first, so ALLIANCE_PUBLIC_URL (where the emulator delivers push pings) is
known before the settings and the app are built.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI

from alliance.settings import Settings
from sandbox.google import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, RunningEmulator
from tests.conftest import TEST_MASTER_KEY
from tests.webhooks.serve import loopback, serve_on


def settings_for(emu: RunningEmulator, home: Path, public_url: str | None, **extra: object) -> Settings:
    return Settings(  # type: ignore[arg-type]
        home=home,
        master_key=TEST_MASTER_KEY,
        timezone="Europe/Madrid",
        google_api_url=emu.api_endpoint,
        google_auth_url=emu.authorize_url,
        google_token_url=emu.token_uri,
        google_client_id=DEFAULT_CLIENT_ID,
        google_client_secret=DEFAULT_CLIENT_SECRET,
        public_url=public_url,
        **extra,
    )


@dataclass
class RunningApp:
    url: str
    settings: Settings
    app: FastAPI


@contextmanager
def serve_alliance(
    emu: RunningEmulator, home: Path, build: Callable[[Settings], FastAPI], **extra: object
) -> Iterator[RunningApp]:
    """Serve ``build(settings)`` on 127.0.0.1 (a free port) with ALLIANCE_PUBLIC_URL pointing at it."""
    sock, url = loopback()
    settings = settings_for(emu, home, url, **extra)
    app = build(settings)
    with serve_on(sock, app, lifespan="off"):
        yield RunningApp(url, settings, app)
