"""HTTP in from providers (Google, Microsoft Graph, Zoom); mounted under ``/webhooks``.

Empty until the provider issues land: each endpoint verifies, stores once, enqueues and answers.
"""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["webhooks"])

__all__ = ["router"]
