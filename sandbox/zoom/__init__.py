"""A local Zoom emulator (OAuth, Meetings API, webhook sender) for the real zoomus client.

Written from Zoom's public documentation; shares no code with ``integrations/zoom``. Entry
points: :func:`create_app`, :class:`ZoomState` (the world and its Python control API),
:class:`WebhookSender` and :func:`run_zoom_emulator`.
"""

from sandbox.zoom.app import create_app
from sandbox.zoom.server import RunningZoom, run_zoom_emulator
from sandbox.zoom.state import (
    DAILY_LIMIT_MESSAGE,
    DEFAULT_ACCOUNT_ID,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_WEBHOOK_SECRET,
    Fault,
    Settings,
    ZoomState,
)
from sandbox.zoom.webhooks import Delivery, WebhookSender, sign

__all__ = [
    "DAILY_LIMIT_MESSAGE",
    "DEFAULT_ACCOUNT_ID",
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_WEBHOOK_SECRET",
    "Delivery",
    "Fault",
    "RunningZoom",
    "Settings",
    "WebhookSender",
    "ZoomState",
    "create_app",
    "run_zoom_emulator",
    "sign",
]
