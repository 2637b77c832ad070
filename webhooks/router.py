"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

from webhooks.outlook import router as outlook_router

router = APIRouter(tags=["webhooks"])
router.include_router(outlook_router)

__all__ = ["router"]
