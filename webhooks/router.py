"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

from webhooks.outlook import router as outlook_router

router = APIRouter(tags=["webhooks"])
router.include_router(outlook_router)
# Google's and Zoom's endpoints are not routed: webhooks.google.GoogleWebhook and
# webhooks.zoom.ZoomWebhook answer them ahead of the routing table (webhooks.asgi).

__all__ = ["router"]
