"""Settings of one Outlook connection, and the operator-level options every connection shares.

A connection's settings (stored encrypted by ``core.mirror``, like every provider's) hold MSAL's
serialized token cache, the account it belongs to and the app (client id) that was consented
to. The operator's options (authority, Graph base URL, the app's client id and secret, an extra
CA bundle) come from ``alliance.settings`` through :attr:`ProviderContext.options`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from integrations.base.protocol import InvalidSettings

DEFAULT_AUTHORITY = "https://login.microsoftonline.com/common"
DEFAULT_GRAPH_URL = "https://graph.microsoft.com/v1.0"
# Read and change events (write-back of the join link needs it; one consent instead of two).
# MSAL adds openid, profile and offline_access itself and refuses them when passed (reserved).
SCOPES: tuple[str, ...] = ("Calendars.ReadWrite",)
# Events per delta page (Prefer: odata.maxpagesize): fewer round trips for a full listing.
PAGE_SIZE = 500

_KNOWN_KEYS = frozenset({"token_cache", "home_account_id", "username", "client_id", "page_size"})
# Settings of connections made before subscriptions moved to core.push kept theirs here; accepted
# and dropped (the next stored settings no longer carry it; the old subscription lapses at Graph).
_RETIRED_KEYS = frozenset({"subscription"})


@dataclass(frozen=True, slots=True)
class OutlookOptions:
    """The operator's Microsoft configuration (``ALLIANCE_MS_*``, ``ALLIANCE_GRAPH_API_URL``)."""

    authority: str = DEFAULT_AUTHORITY
    graph_url: str = DEFAULT_GRAPH_URL
    client_id: str | None = None
    client_secret: str | None = None
    ca_bundle: str | None = None  # extra trust (a private CA, the sandbox's test CA); None: the system's
    # The database whose advisory locks keep requests per mailbox at 2 across worker processes
    # (PostgreSQL only; otherwise the limit holds per process).
    slots_database_url: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> OutlookOptions:
        return cls(
            authority=str(raw.get("authority") or DEFAULT_AUTHORITY).rstrip("/"),
            graph_url=str(raw.get("graph_url") or DEFAULT_GRAPH_URL).rstrip("/"),
            client_id=raw.get("client_id") or None,
            client_secret=raw.get("client_secret") or None,
            ca_bundle=raw.get("ca_bundle") or None,
            slots_database_url=raw.get("slots_database_url") or None,
        )

    def require_client(self) -> tuple[str, str]:
        if not self.client_id or not self.client_secret:
            raise InvalidSettings(
                "no Microsoft app configured: set ALLIANCE_MS_CLIENT_ID and ALLIANCE_MS_CLIENT_SECRET "
                "(an app registration in Microsoft Entra with a client secret)"
            )
        return self.client_id, self.client_secret


@dataclass(frozen=True, slots=True)
class OutlookSettings:
    """Clean settings of one connection."""

    token_cache: str  # MSAL's SerializableTokenCache, serialized (holds the refresh token)
    home_account_id: str  # the MSAL account ("<uid>.<utid>") to acquire tokens for
    client_id: str
    username: str = ""
    page_size: int = PAGE_SIZE

    def with_cache(self, token_cache: str) -> OutlookSettings:
        return replace(self, token_cache=token_cache)

    @property
    def mailbox(self) -> str:
        """What Outlook's per-mailbox limits are counted by."""
        return self.home_account_id

    def as_dict(self) -> dict[str, Any]:
        return {
            "token_cache": self.token_cache,
            "home_account_id": self.home_account_id,
            "username": self.username,
            "client_id": self.client_id,
            "page_size": self.page_size,
        }


def parse_settings(raw: Mapping[str, Any]) -> OutlookSettings:
    """Validate a connection's settings; raise :class:`InvalidSettings` naming the problem."""
    if not isinstance(raw, Mapping):
        raise InvalidSettings("Outlook settings must be a mapping")
    unknown = sorted(set(raw) - _KNOWN_KEYS - _RETIRED_KEYS)
    if unknown:
        raise InvalidSettings(f"unknown Outlook setting(s): {', '.join(unknown)}")
    cache, account, client_id = raw.get("token_cache"), raw.get("home_account_id"), raw.get("client_id")
    if not isinstance(cache, str) or not cache:
        raise InvalidSettings("an Outlook connection needs its token cache; run 'alliance connect outlook'")
    try:
        parsed = json.loads(cache)
    except ValueError:
        raise InvalidSettings("the Outlook token cache is not valid JSON; run 'alliance connect outlook'") from None
    if not isinstance(parsed, dict) or not parsed.get("RefreshToken"):
        raise InvalidSettings("the Outlook token cache holds no refresh token; run 'alliance connect outlook'")
    if not isinstance(account, str) or not account:
        raise InvalidSettings("an Outlook connection needs 'home_account_id' (the signed-in account)")
    if not isinstance(client_id, str) or not client_id:
        raise InvalidSettings("an Outlook connection needs 'client_id' (the app it was consented to)")
    page_size = raw.get("page_size", PAGE_SIZE)
    if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 1000:
        raise InvalidSettings("'page_size' must be a whole number from 1 to 1000")
    username = raw.get("username") or ""
    return OutlookSettings(cache, account, client_id, str(username), page_size)


__all__ = [
    "DEFAULT_AUTHORITY",
    "DEFAULT_GRAPH_URL",
    "PAGE_SIZE",
    "SCOPES",
    "OutlookOptions",
    "OutlookSettings",
    "parse_settings",
]
