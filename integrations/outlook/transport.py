"""HTTP sessions that trust exactly what the operator configured.

MSAL takes a requests-like ``http_client``. requests lets ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` silently replace ``Session.verify`` (psf/requests#3829, #4726), so a CA bundle
the operator configured (``ALLIANCE_MS_CA_BUNDLE``) would be ignored on machines that set those
variables; :class:`PinnedSession` keeps its own ``verify`` while still honouring proxy settings.
Graph itself is called with httpx, given an SSL context built from the same bundle.
"""

from __future__ import annotations

import os
import ssl
import threading
from functools import lru_cache
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx
import requests

# How long an idle connection to Graph is kept for the next request (httpx's default is 5 s): the
# syncs of a worker come seconds to a minute apart. httpx never sends on a connection the server
# has closed meanwhile (it checks before reuse).
KEEPALIVE_SECONDS = 60.0


class PinnedSession(requests.Session):
    """A requests session whose ``verify`` wins over the CA-bundle environment variables."""

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        pinned = self.verify if verify in (None, True) else verify
        return super().merge_environment_settings(url, proxies, stream, pinned, cert)


def identity_session(ca_bundle: str | None) -> requests.Session:
    """The session MSAL talks to the identity platform with."""
    session = PinnedSession() if ca_bundle else requests.Session()
    if ca_bundle:
        session.verify = ca_bundle
    return session


@lru_cache(maxsize=8)
def ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """System trust, plus ``ca_bundle`` when one is configured (built once: loading the store is slow)."""
    context = ssl.create_default_context()
    if ca_bundle:
        context.load_verify_locations(cafile=ca_bundle)
    return context


_clients: dict[tuple[int, str | None, float], httpx.Client] = {}
_clients_lock = threading.Lock()


def shared_client(ca_bundle: str | None, timeout: float) -> httpx.Client:
    """The process's Graph client for this trust and timeout, shared by every connection's requests.

    One client per sync opened a new TCP and TLS connection to Graph for each sync and dropped it;
    a shared one keeps its connections alive between syncs. httpx clients are safe to share between
    threads; authorization is set per request (``GraphClient.send``), and the client keeps no
    cookies (a load balancer's affinity cookie set for one mailbox's request would otherwise go out
    with every other mailbox's), so nothing of one mailbox's request stays with the client for
    another's. A forked child gets clients of its own, never its parent's sockets.
    """
    key = (os.getpid(), ca_bundle, timeout)
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            client = _clients[key] = httpx.Client(
                verify=ssl_context(ca_bundle),
                timeout=timeout,
                limits=httpx.Limits(keepalive_expiry=KEEPALIVE_SECONDS),
                cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),  # stores none
            )
        return client


def _new_lock_after_fork() -> None:
    # Held by a parent's thread at the fork, the lock would stay held in the child forever.
    global _clients_lock
    _clients_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_lock_after_fork)


__all__ = ["KEEPALIVE_SECONDS", "PinnedSession", "identity_session", "shared_client", "ssl_context"]
