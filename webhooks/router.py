"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

from webhooks import google
from webhooks.outlook import router as outlook_router

router = APIRouter(tags=["webhooks"])
router.include_router(google.router)
router.include_router(outlook_router)
# Zoom's endpoint is not routed: webhooks.zoom.ZoomWebhook answers it ahead of the routing table.

__all__ = ["router"]
