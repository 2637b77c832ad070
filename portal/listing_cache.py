"""Encoded listings kept between requests, valid for as long as their listing version.

``GET /api/v1/occurrences`` decrypts and encodes every occurrence in the window; a therapist's
calendar app polls it far more often than the calendar changes. Each entry holds the encoded body
with the version it was computed at (core.mirror.occurrence_listing); a request reads the current
version first (one small query) and reuses the body when it is unchanged. Across several web
processes each keeps its own cache: the version lives in the database, so none serves a stale
listing after the write that changed it is committed.

Privacy: bodies are plaintext in the web process's memory, as every response is while it is
built. The process holds the master key for as long as it runs, so a cache adds nothing for
someone able to read its memory; nothing is written to disk. Bounded by total bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

V = TypeVar("V", bound=Hashable)


@dataclass(frozen=True)
class CachedListing(Generic[V]):
    version: V
    body: bytes


class ListingCache(Generic[V]):
    """A least-recently-used map of listing key -> (version, body), at most ``max_bytes`` of bodies."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, CachedListing[V]] = OrderedDict()
        self._bytes = 0
        # Routes run in the thread pool: every read also reorders, so reads take the lock too.
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> CachedListing[V] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
            return entry

    def put(self, key: Hashable, version: V, body: bytes) -> None:
        if len(body) > self.max_bytes:
            return  # larger than the whole cache (or caching is off): never kept
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._bytes -= len(old.body)
            self._entries[key] = CachedListing(version, body)
            self._bytes += len(body)
            while self._bytes > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._bytes -= len(evicted.body)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size_bytes(self) -> int:
        return self._bytes
