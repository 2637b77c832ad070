"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

from webhooks import google
from webhooks.outlook import router as outlook_router
from webhooks.zoom import router as zoom_router

router = APIRouter(tags=["webhooks"])
router.include_router(google.router)
router.include_router(outlook_router)
router.include_router(zoom_router)

__all__ = ["router"]
