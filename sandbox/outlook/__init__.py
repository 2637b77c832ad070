"""A local Microsoft identity platform + Microsoft Graph (calendar) emulator, served over HTTPS.

See ``sandbox/README.md``. Entry points: :func:`create_app` (the ASGI app), :class:`OutlookState`
(the in-memory world and its Python control API) and :func:`run_outlook_emulator` (serve it on
127.0.0.1 with a fresh test CA, in a thread).
"""

from sandbox.outlook.app import create_app
from sandbox.outlook.server import TENANT, RunningEmulator, run_outlook_emulator
from sandbox.outlook.state import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    TENANT_ID,
    USERNAME,
    OutlookState,
    Settings,
)

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "TENANT",
    "TENANT_ID",
    "USERNAME",
    "OutlookState",
    "RunningEmulator",
    "Settings",
    "create_app",
    "run_outlook_emulator",
]
