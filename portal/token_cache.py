"""Recently verified API tokens, so a client polling the API is not looked up on every request.

An entry maps the SHA-256 of a token (never the token) to its therapist for a few seconds
(``ALLIANCE_API_TOKEN_CACHE_SECONDS``, 0 turns it off). Revoking a token through this web process
clears the cache at once; a revocation made elsewhere (the CLI, another web process) takes effect
here within those seconds. The point is the hot path of calendar apps and scripts polling
``/api/v1/occurrences``: one database read and one thread hop less per request
(benchmarks/api_occurrences.py).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict

MAX_ENTRIES = 10_000


def token_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenCache:
    def __init__(self, ttl_seconds: float) -> None:
        self.ttl = ttl_seconds
        self._entries: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> int | None:
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= time.monotonic():
                del self._entries[key]
                return None
            return entry[0]

    def put(self, key: str, therapist_id: int) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            self._entries[key] = (therapist_id, time.monotonic() + self.ttl)
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
