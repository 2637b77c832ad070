"""Kept-alive connections to Google, shared by the requests of one process.

Every sync builds its connection's provider, and each provider used to bring its own
``httplib2.Http``: each sync (one per push ping) opened a new connection to Google, a TCP and TLS
handshake before its one request, and dropped it afterwards. :class:`HttpPool` stands in for that
``Http`` (``AuthorizedHttp`` and the token refresh only call ``request``): each request borrows an
idle ``Http`` of the pool, with whatever connections it keeps alive, and hands it back once the
response is read. A request that fails in any way takes its ``Http`` with it (closed, never reused):
what is reused is known to be between responses.

Nothing of one request stays with the ``Http`` for the next: ``AuthorizedHttp`` sets the
``Authorization`` header on every request, and httplib2 keeps no cookies and no cache here.

A connection the server closed while it sat idle fails on its next use. httplib2 reconnects and
sends again by itself when it sees that as a missing status line (any method: its own behaviour,
as it always was for the requests one sync made on one ``Http``); a ``GET`` that fails on a reused
connection any other way (a reset) is sent once more on a new one here, at once, instead of
waiting for the client's retry backoff. Other methods are not sent twice by this module.
"""

from __future__ import annotations

import http.client
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import httplib2

__all__ = ["IDLE_SECONDS", "MAX_IDLE", "HttpPool", "shared_pool"]

# An Http idle longer than this is closed rather than reused: servers drop idle connections after
# a while (uvicorn after 5 s, Google's front ends later), and a connection kept for hours in a
# quiet worker holds a socket for nothing.
IDLE_SECONDS = 60.0
# Idle Http objects kept per pool: a worker's job slots each hold one while a request is in flight.
MAX_IDLE = 16

# A reused connection the server had closed: what sending on it, or reading from it, raises.
_STALE = (ConnectionError, http.client.RemoteDisconnected, http.client.BadStatusLine)
_RESENDABLE = frozenset({"GET", "HEAD"})


class HttpPool:
    """``httplib2.Http``'s ``request`` over a pool of idle ``Http`` objects (thread-safe)."""

    def __init__(
        self,
        timeout: float | None,
        *,
        max_idle: int = MAX_IDLE,
        idle_seconds: float = IDLE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout = timeout
        self._max_idle = max_idle
        self._idle_seconds = idle_seconds
        self._clock = clock
        self._lock = threading.Lock()
        # (Http, when it was handed back), oldest first: borrowed from the end (the warmest).
        self._idle: list[tuple[httplib2.Http, float]] = []
        self._pid = os.getpid()

    def request(
        self,
        uri: str,
        method: str = "GET",
        body: Any = None,
        headers: dict[str, str] | None = None,
        redirections: int = httplib2.DEFAULT_MAX_REDIRECTS,
        connection_type: Any = None,
        **kwargs: Any,
    ) -> tuple[httplib2.Response, bytes]:
        """``httplib2.Http.request`` on a borrowed ``Http``."""
        http, reused = self._borrow()
        result: tuple[httplib2.Response, bytes]
        send = {"body": body, "headers": headers, "redirections": redirections, "connection_type": connection_type}
        try:
            result = http.request(uri, method, **send, **kwargs)
        except _STALE:
            http.close()
            if not reused or method.upper() not in _RESENDABLE:
                raise
            http = self._new()
            try:
                result = http.request(uri, method, **send, **kwargs)
            except BaseException:
                http.close()
                raise
        except BaseException:
            http.close()
            raise
        self._give_back(http)
        return result

    def close(self) -> None:
        """Close every idle ``Http`` (those lent out are closed or kept when they come back)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for kept, _ in idle:
            kept.close()

    def _new(self) -> httplib2.Http:
        return httplib2.Http(timeout=self.timeout)

    def _forked(self) -> bool:
        if self._pid == os.getpid():
            return False
        # A child process must never send on its parent's sockets, nor wait on a lock a parent's
        # thread held at the fork: it starts with an empty pool.
        self._lock = threading.Lock()
        self._idle = []
        self._pid = os.getpid()
        return True

    def _borrow(self) -> tuple[httplib2.Http, bool]:
        if self._forked():
            return self._new(), False
        now = self._clock()
        stale: list[httplib2.Http] = []
        found: httplib2.Http | None = None
        with self._lock:
            while self._idle:
                http, since = self._idle.pop()
                if now - since <= self._idle_seconds:
                    found = http
                    break
                stale.append(http)
            # What is left below is older still.
            while self._idle and now - self._idle[0][1] > self._idle_seconds:
                stale.append(self._idle.pop(0)[0])
        for http in stale:
            http.close()
        if found is not None:
            return found, True
        return self._new(), False

    def _give_back(self, http: httplib2.Http) -> None:
        if self._forked():
            http.close()  # made in the parent, if it got here: not kept
            return
        surplus: list[httplib2.Http] = []
        with self._lock:
            self._idle.append((http, self._clock()))
            while len(self._idle) > self._max_idle:
                surplus.append(self._idle.pop(0)[0])
        for old in surplus:
            old.close()


_pools: dict[float | None, HttpPool] = {}
_pools_lock = threading.Lock()


def shared_pool(timeout: float | None) -> HttpPool:
    """The process's pool for requests with this timeout."""
    with _pools_lock:
        pool = _pools.get(timeout)
        if pool is None:
            pool = _pools[timeout] = HttpPool(timeout)
        return pool


def _new_lock_after_fork() -> None:
    # Held by a parent's thread at the fork, the lock would stay held in the child forever. The
    # pools themselves empty themselves in a child (HttpPool._forked).
    global _pools_lock
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)
