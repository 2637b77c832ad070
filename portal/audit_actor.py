"""Who a request acts as, for the audit log (core.audit): the therapist and the request's address."""

from __future__ import annotations

from fastapi import Request

from core.audit import Actor

__all__ = ["actor_for"]


def actor_for(request: Request, therapist_id: int, channel: str = "api") -> Actor:
    """The audit actor of a request: e.g. ``Actor(3, "api 203.0.113.7")``."""
    host = request.client.host if request.client else "unknown"
    return Actor(therapist_id, f"{channel} {host}")
