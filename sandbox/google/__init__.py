"""A local Google Calendar API v3 + Google OAuth emulator for the real client libraries.

See ``sandbox/README.md``. Entry points: :func:`create_app` (the ASGI app),
:class:`GoogleState` (the in-memory world and its Python control API) and
:func:`run_google_emulator` (serve it on 127.0.0.1 in a thread).
"""

from sandbox.google.app import create_app
from sandbox.google.server import RunningEmulator, run_google_emulator
from sandbox.google.state import (
    CALENDAR_SCOPE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    PRIMARY_EMAIL,
    GoogleState,
    Settings,
)

__all__ = [
    "CALENDAR_SCOPE",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "PRIMARY_EMAIL",
    "GoogleState",
    "RunningEmulator",
    "Settings",
    "create_app",
    "run_google_emulator",
]
