"""Graph's JSON batching: ``POST /v1.0/$batch`` (learn.microsoft.com/graph/json-batching).

Up to 20 requests in one call, each ``{"id", "method", "url", "headers"?, "body"?, "dependsOn"?}``
with a URL relative to the version (``/me/events/{id}``). The answer is ``{"responses": [...]}``,
one ``{"id", "status", "headers", "body"}`` per request, in the order they finished (not
necessarily the order asked). What Graph documents and this emulator reproduces:

- the batch is 200 whenever it could be read; every request carries its own status;
- the outer call's ``Authorization`` applies to every request; its other headers do not (each
  request sends its own ``Prefer``);
- requests without ``dependsOn`` are dispatched up to four at a time, so they count against the
  mailbox's concurrency limit like separate calls (a fifth, or one beside other calls, is 429
  ``ApplicationThrottled``); ``dependsOn`` runs a request after the ones it names, and a request
  whose dependency failed answers 424 (Failed Dependency) without running;
- more than 20 requests, duplicate or missing ids, or a ``dependsOn`` naming no request of the
  batch: 400 for the whole batch.

Each request goes through the emulator's own app (the emulation middleware included), so it is
recorded, throttled and open to injected faults exactly as the same call made on its own.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from sandbox.outlook.state import GraphError

BATCH_LIMIT = 20
PARALLEL = 4  # requests of one batch Graph dispatches to the mailbox at once


def _bad(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


def _parse(body: Any) -> list[dict[str, Any]]:
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise _bad("Invalid batch payload format: 'requests' must be a non-empty array.")
    if len(requests) > BATCH_LIMIT:
        raise _bad(f"Batch request limit exceeded: at most {BATCH_LIMIT} requests per batch.")
    seen: set[str] = set()
    for item in requests:
        if not isinstance(item, dict):
            raise _bad("Invalid batch payload format: every request must be an object.")
        ident, method, url = item.get("id"), item.get("method"), item.get("url")
        if not isinstance(ident, str) or not ident:
            raise _bad("Invalid batch payload format: every request needs an 'id'.")
        if ident in seen:
            raise _bad(f"Invalid batch payload format: request id '{ident}' is used twice.")
        seen.add(ident)
        if not isinstance(method, str) or not isinstance(url, str) or not url:
            raise _bad(f"Invalid batch payload format: request '{ident}' needs a 'method' and a 'url'.")
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
            raise _bad(f"Invalid batch payload format: request '{ident}' has malformed 'headers'.")
    for item in requests:
        depends = item.get("dependsOn", [])
        if not isinstance(depends, list) or any(d not in seen or d == item["id"] for d in depends):
            raise _bad(f"Invalid batch payload format: request '{item['id']}' depends on no request of this batch.")
    return requests


def batch_router() -> APIRouter:
    router = APIRouter(prefix="/v1.0")

    @router.post("/$batch")
    async def batch(request: Request) -> JSONResponse:
        try:
            payload = await request.json()
        except ValueError:
            raise _bad("Invalid batch payload format: the body is not JSON.") from None
        requests = _parse(payload)
        authorization = request.headers.get("authorization")
        transport = httpx.ASGITransport(app=request.app)
        base = f"{request.url.scheme}://{request.url.netloc}/v1.0"
        done: dict[str, asyncio.Event] = {str(r["id"]): asyncio.Event() for r in requests}
        statuses: dict[str, int] = {}
        responses: list[dict[str, Any]] = []
        gate = asyncio.Semaphore(PARALLEL)

        async with httpx.AsyncClient(transport=transport, base_url=base) as client:

            async def run(item: dict[str, Any]) -> None:
                ident = str(item["id"])
                try:
                    depends = [str(d) for d in item.get("dependsOn", [])]
                    for name in depends:
                        await done[name].wait()
                    if any(statuses[name] >= 400 for name in depends):
                        error = GraphError(424, "FailedDependency", "A request this one depends on failed.")
                        answer: dict[str, Any] = {"id": ident, "status": 424, "body": error.body()}
                    else:
                        async with gate:
                            answer = await _dispatch(client, item, authorization)
                    statuses[ident] = int(answer["status"])
                    responses.append(answer)
                finally:
                    statuses.setdefault(ident, 500)
                    done[ident].set()

            await asyncio.gather(*(run(item) for item in requests))
        return JSONResponse({"responses": responses})

    return router


async def _dispatch(client: httpx.AsyncClient, item: dict[str, Any], authorization: str | None) -> dict[str, Any]:
    url = str(item["url"])
    headers = {str(k): str(v) for k, v in item.get("headers", {}).items()}
    if authorization:
        headers["Authorization"] = authorization
    body = item.get("body")
    answer = await client.request(
        str(item["method"]).upper(),
        url if url.startswith("/") else f"/{url}",
        headers=headers,
        content=None if body is None else json.dumps(body).encode(),
    )
    result: dict[str, Any] = {
        "id": str(item["id"]),
        "status": answer.status_code,
        "headers": {k: v for k, v in answer.headers.items() if k.lower() in ("content-type", "retry-after", "etag")},
    }
    if answer.content:
        try:
            result["body"] = answer.json()
        except ValueError:
            result["body"] = answer.text
    return result


__all__ = ["BATCH_LIMIT", "batch_router"]
