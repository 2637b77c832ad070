"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

from webhooks import google

router = APIRouter(tags=["webhooks"])
router.include_router(google.router)

__all__ = ["router"]
