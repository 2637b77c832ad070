"""What the webhooks answered ahead of the routing table share: raw ASGI reading and answering.

Provider pushes are the most frequent requests of all, and a routed FastAPI endpoint spent about
twice a webhook's own time finding its route and wrapping the request (benchmarks/README.md,
"Zoom webhooks: the ack path"), for endpoints that take no parameters and no dependencies. So the
Zoom and Google webhooks are pure ASGI middlewares placed innermost (inside the body limit, the
request log and the security headers), built on these helpers.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp, Receive, Scope, Send

from portal.errors import problem

__all__ = ["PostAheadOfRoutes", "WebhookRoute", "answer_empty", "header", "problem", "read_body"]


@dataclass(frozen=True, slots=True)
class WebhookRoute:
    """What the request log reads from ``scope["route"]`` (the template it logs); no router sets it."""

    path: str


class PostAheadOfRoutes:
    """An ASGI middleware that answers ``POST`` on one path itself (``handle_post``) and passes
    every other request on to ``app``; another method on that path gets 405."""

    path: str

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._route = WebhookRoute(self.path)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != self.path:
            await self.app(scope, receive, send)
            return
        scope["route"] = self._route
        if scope["method"] != "POST":
            await problem(405, "Method Not Allowed", {"allow": "POST"})(scope, receive, send)
            return
        await self.handle_post(scope, receive, send)

    async def handle_post(self, scope: Scope, receive: Receive, send: Send) -> None:
        raise NotImplementedError


async def answer_empty(send: Send, status: int) -> None:
    """An answer with ``status`` and no body. Fresh messages each time: the middlewares around
    (the security headers) replace a start message's headers in place."""
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def read_body(receive: Receive) -> bytes:
    """The raw bytes, as sent (a signature covers them: re-serialised JSON would differ)."""
    chunks = []
    more = True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def header(scope: Scope, name: bytes) -> str | None:
    """A request header by its lower-case name, or None."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None
