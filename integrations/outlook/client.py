"""A small Microsoft Graph client over httpx: retries, throttling, typed errors, 4 per mailbox.

- Every request carries ``Prefer: IdType="ImmutableId"`` (ids survive moves between folders)
  and ``Prefer: outlook.timezone="UTC"`` (times come back in UTC), each as its own header.
- 429 and 503/504 (and timeouts) are retried, waiting at least what ``Retry-After`` says, else
  with exponential backoff; a 401 gets one forced token refresh, then means reauthorisation.
- At most :data:`MAX_CONCURRENT` (2) requests per mailbox are in flight at once, in this process
  or, on PostgreSQL, across every worker process (:func:`mailbox_slots`; Outlook's
  MailboxConcurrency limit is 4); callers may use threads freely.
- Callers see :mod:`integrations.outlook.errors`, never status codes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import httpx

from core.store.db import make_engine
from core.store.slots import AdvisorySlots, Slots, ThreadSlots
from integrations.base.json_body import parse_json
from integrations.outlook.errors import (
    RECONNECT_HINT,
    DeltaExpired,
    GraphUnavailable,
    NotFound,
    PreconditionFailed,
    ReauthorizationRequired,
    RequestRejected,
)
from integrations.outlook.tokens import TokenManager
from integrations.outlook.transport import shared_client

# Graph allows 4 concurrent requests per mailbox (MailboxConcurrency); Alliance keeps 2, so a sync
# and a write-back or renewal can overlap without ever earning the 429 (reference/scale.md 6.3, 8).
MAX_CONCURRENT = 2
TIMEOUT_SECONDS = 30.0
BASE_PREFERENCES: tuple[tuple[str, str], ...] = (
    ("Prefer", 'IdType="ImmutableId"'),
    ("Prefer", 'outlook.timezone="UTC"'),
)
TEXT_BODY = ("Prefer", 'outlook.body-content-type="text"')
# Graph's JSON batching takes at most 20 requests per call (learn.microsoft.com/graph/json-batching).
BATCH_LIMIT = 20
_RETRYABLE = frozenset({429, 500, 502, 503, 504})
_EXPIRED_CODES = frozenset({"syncstatenotfound", "resyncrequired", "syncstateinvalid"})

# One process: a semaphore per mailbox. Several worker processes on PostgreSQL: advisory-lock slots.
_PROCESS_SLOTS = ThreadSlots(MAX_CONCURRENT)


@lru_cache(maxsize=4)
def _advisory_slots(database_url: str) -> AdvisorySlots:
    return AdvisorySlots(make_engine(database_url), MAX_CONCURRENT, namespace="graph-mailbox")


def mailbox_slots(database_url: str | None = None) -> Slots:
    """What limits the requests in flight per mailbox: across processes sharing a PostgreSQL
    database when ``database_url`` names one, else among the threads of this process."""
    if database_url and database_url.startswith("postgresql"):
        return _advisory_slots(database_url)
    return _PROCESS_SLOTS


@dataclass(frozen=True)
class RetryPolicy:
    """How long one request may keep trying; ``sleep`` and ``random`` are injectable for tests."""

    max_attempts: int = 6
    base_delay: float = 1.0
    max_delay: float = 32.0
    max_total_delay: float = 120.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)
    random: Callable[[], float] = field(default=random.random, compare=False)

    def delay(self, retry: int, retry_after: float | None) -> float:
        backoff = min(self.max_delay, self.base_delay * 2**retry)
        jittered: float = backoff / 2 + self.random() * backoff / 2
        # Graph's Retry-After is the minimum; waiting less just earns another 429.
        return retry_after if retry_after is not None else jittered


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _error_code(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("code") or "") if isinstance(error, dict) else ""


class GraphClient:
    """Graph requests for one connection (one mailbox)."""

    def __init__(
        self,
        tokens: TokenManager,
        *,
        graph_url: str,
        mailbox: str,
        ca_bundle: str | None = None,
        timeout: float = TIMEOUT_SECONDS,
        retry: RetryPolicy | None = None,
        slots: Slots | None = None,
    ) -> None:
        self.tokens = tokens
        self.graph_url = graph_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self.mailbox = mailbox
        self.slots = slots or mailbox_slots()
        # Shared by the process's syncs (kept-alive connections), never closed by one of them.
        self.http = shared_client(ca_bundle, timeout)
        self.requests_made = 0

    def url(self, path: str) -> str:
        return path if path.startswith("https://") or path.startswith("http://") else f"{self.graph_url}{path}"

    def get(
        self, path: str, *, params: dict[str, str] | None = None, page_size: int | None = None, text_body: bool = False
    ) -> dict[str, Any]:
        extra = [("Prefer", f"odata.maxpagesize={page_size}")] if page_size else []
        if text_body:
            # Graph returns bodies as HTML unless text is asked for: the mirror keeps a plain description.
            extra.append(TEXT_BODY)
        return self.send("GET", path, params=params, headers=extra) or {}

    def batch_get(self, paths: list[str], *, text_body: bool = False) -> list[tuple[int, dict[str, Any] | None]]:
        """GET each of ``paths`` (at most :data:`BATCH_LIMIT`) in one ``$batch`` call.

        Returns, in the order of ``paths``, each request's status and JSON object (None for an
        answer without one). The batch as a whole is retried like any request; what one request
        answers (404, 429, 5xx...) is the caller's to handle, e.g. by asking for that one again
        on its own. The requests run one after another (``dependsOn``): Graph dispatches the
        requests of a batch four at a time, which would take the mailbox past the two requests
        Alliance keeps in flight (:data:`MAX_CONCURRENT`); a batch holds one slot, as one request
        does. After a failed request the rest answer 424 (Failed Dependency) without running.
        """
        if not paths:
            return []
        if len(paths) > BATCH_LIMIT:
            raise ValueError(f"a batch takes at most {BATCH_LIMIT} requests, not {len(paths)}")
        # Only the outer call's Authorization reaches the requests: each states its own preferences.
        preferences = [value for _, value in BASE_PREFERENCES] + ([TEXT_BODY[1]] if text_body else [])
        headers = {"Prefer": ", ".join(preferences)}
        requests: list[dict[str, Any]] = []
        for n, path in enumerate(paths):
            request: dict[str, Any] = {"id": str(n), "method": "GET", "url": path, "headers": headers}
            if n:
                request["dependsOn"] = [str(n - 1)]
            requests.append(request)
        body = self.send("POST", "/$batch", json={"requests": requests}) or {}
        answers: dict[str, tuple[int, dict[str, Any] | None]] = {}
        for item in body.get("responses") or []:
            if isinstance(item, dict) and isinstance(item.get("status"), int):
                payload = item.get("body")
                answers[str(item.get("id"))] = (item["status"], payload if isinstance(payload, dict) else None)
        # A request Graph left unanswered counts as failed: the caller asks for it again alone.
        return [answers.get(str(n), (0, None)) for n in range(len(paths))]

    def send(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> dict[str, Any] | None:
        """One request with retries; the JSON answer (None for 204)."""
        url = self.url(path)
        waited = 0.0
        refreshed = False
        refused: str | None = None
        retries = 0
        for _ in range(self.retry.max_attempts + 1):  # +1: the forced refresh after a 401 is free
            token = self.tokens.access_token(force_refresh=refreshed, refused=refused)
            all_headers = [*BASE_PREFERENCES, *(headers or []), ("Authorization", f"Bearer {token}")]
            retry_after: float | None = None
            try:
                with self.slots.hold(self.mailbox):
                    self.requests_made += 1
                    response = self.http.request(method, url, params=params, json=json, headers=all_headers)
            except httpx.TimeoutException:
                what = "timed out"
            except httpx.TransportError as exc:
                what = f"could not be reached ({type(exc).__name__})"
            else:
                status = response.status_code
                if status < 300:
                    return None if status == 204 or not response.content else dict(parse_json(response.content))
                code = _error_code(response)
                if status == 410 or code.lower() in _EXPIRED_CODES:
                    raise DeltaExpired(f"Graph no longer knows this delta state ({code or status})")
                if status == 401:
                    if not refreshed:
                        refreshed, refused = True, token
                        continue
                    raise ReauthorizationRequired(f"Microsoft Graph refuses this calendar's sign-in; {RECONNECT_HINT}")
                if status == 403:
                    raise ReauthorizationRequired(
                        f"Microsoft Graph denies access to the calendar ({code or 403}); {RECONNECT_HINT}"
                    )
                if status == 404:
                    raise NotFound(f"Graph: not found ({code or 404})")
                if status == 412:
                    raise PreconditionFailed("the event changed in Outlook in the meantime (412)")
                if status not in _RETRYABLE:
                    raise RequestRejected(f"Microsoft Graph refused the request ({status} {code})".rstrip())
                what = f"answered {status}"
                retry_after = _retry_after(response)
            if retries + 1 >= self.retry.max_attempts:
                break
            delay = self.retry.delay(retries, retry_after)
            if waited + delay > self.retry.max_total_delay:
                break
            retries += 1
            waited += delay
            self.retry.sleep(delay)
        raise GraphUnavailable(
            f"Microsoft Graph {what} through {retries + 1} attempts; the next sync tries again", retry_after=retry_after
        )


__all__ = ["BASE_PREFERENCES", "BATCH_LIMIT", "MAX_CONCURRENT", "GraphClient", "RetryPolicy", "mailbox_slots"]
