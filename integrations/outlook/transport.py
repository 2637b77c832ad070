"""HTTP sessions that trust exactly what the operator configured.

MSAL takes a requests-like ``http_client``. requests lets ``REQUESTS_CA_BUNDLE`` /
``CURL_CA_BUNDLE`` silently replace ``Session.verify`` (psf/requests#3829, #4726), so a CA bundle
the operator configured (``ALLIANCE_MS_CA_BUNDLE``) would be ignored on machines that set those
variables; :class:`PinnedSession` keeps its own ``verify`` while still honouring proxy settings.
Graph itself is called with httpx, given an SSL context built from the same bundle.
"""

from __future__ import annotations

import ssl
from functools import lru_cache
from typing import Any

import requests


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


__all__ = ["PinnedSession", "identity_session", "ssl_context"]
