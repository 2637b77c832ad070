"""Settings of one Google Calendar connection, and the operator-level options every connection shares.

A connection's settings (stored encrypted by ``core.mirror``) hold the OAuth grant: the refresh
token, the client it was issued to, and the last access token with its expiry. The operator's
options (API and OAuth endpoints, the app's own OAuth client) come from ``alliance.settings``
through :attr:`ProviderContext.options`; nothing here reads the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from integrations.base.protocol import InvalidSettings

DEFAULT_API_URL = "https://www.googleapis.com/calendar/v3/"
DEFAULT_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
DEFAULT_TOKEN_URL = "https://oauth2.googleapis.com/token"
# Read and change events. The mirror only reads today, but write-back (the client's join link on
# the event) needs the same grant; asking once spares every therapist a second consent screen.
SCOPES: tuple[str, ...] = ("https://www.googleapis.com/auth/calendar.events",)
# Google's hard maximum page size (discovery doc, events.list maxResults): fewest requests.
MAX_RESULTS = 2500

_KNOWN_KEYS = frozenset(
    {"calendar_id", "refresh_token", "client_id", "client_secret", "token", "expiry", "scopes", "max_results"}
)


@dataclass(frozen=True, slots=True)
class GoogleOptions:
    """The operator's Google configuration (``ALLIANCE_GOOGLE_*``), the same for every connection."""

    api_url: str = DEFAULT_API_URL
    auth_url: str = DEFAULT_AUTH_URL
    token_url: str = DEFAULT_TOKEN_URL
    client_id: str | None = None
    client_secret: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any]) -> GoogleOptions:
        return cls(
            api_url=raw.get("api_url") or DEFAULT_API_URL,
            auth_url=raw.get("auth_url") or DEFAULT_AUTH_URL,
            token_url=raw.get("token_url") or DEFAULT_TOKEN_URL,
            client_id=raw.get("client_id") or None,
            client_secret=raw.get("client_secret") or None,
        )


@dataclass(frozen=True, slots=True)
class GoogleSettings:
    """Clean settings of one connection."""

    refresh_token: str
    client_id: str
    # None: the grant came from the operator's own OAuth client (`alliance connect google`), whose
    # secret stays in the operator's configuration instead of being copied into every connection.
    client_secret: str | None = None
    token: str | None = None
    expiry: datetime | None = None  # aware UTC
    scopes: tuple[str, ...] = SCOPES
    calendar_id: str = "primary"
    max_results: int = MAX_RESULTS

    def secret(self, options: GoogleOptions) -> str | None:
        """The client secret to refresh with: the connection's own, else the operator's for the same client."""
        if self.client_secret:
            return self.client_secret
        return options.client_secret if options.client_id == self.client_id else None

    def with_tokens(self, token: str | None, expiry: datetime | None, refresh_token: str | None) -> GoogleSettings:
        return replace(self, token=token, expiry=expiry, refresh_token=refresh_token or self.refresh_token)

    def as_dict(self) -> dict[str, Any]:
        return {
            "calendar_id": self.calendar_id,
            "refresh_token": self.refresh_token,
            "client_id": self.client_id,
            "client_secret": self.client_secret,
            "token": self.token,
            "expiry": self.expiry.astimezone(UTC).isoformat() if self.expiry else None,
            "scopes": list(self.scopes),
            "max_results": self.max_results,
        }


def _text(raw: Mapping[str, Any], key: str, *, required: bool) -> str | None:
    value = raw.get(key)
    if value is None or value == "":
        if required:
            raise InvalidSettings(f"Google settings need a {key!r}")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidSettings(f"Google setting {key!r} must be a non-empty string")
    return value.strip()


def _expiry(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise InvalidSettings("Google setting 'expiry' must be an ISO 8601 date-time")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidSettings(f"Google setting 'expiry' is not an ISO 8601 date-time: {value!r}") from None
    # google-auth writes naive UTC expiries (Credentials.to_json); read them as UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_settings(raw: Mapping[str, Any]) -> GoogleSettings:
    """Validate a connection's settings; raise :class:`InvalidSettings` naming the problem."""
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        raise InvalidSettings(f"unknown Google setting(s): {', '.join(unknown)}")
    scopes = raw.get("scopes") or list(SCOPES)
    if isinstance(scopes, str):
        scopes = scopes.split()
    if not isinstance(scopes, list | tuple) or not all(isinstance(s, str) and s for s in scopes):
        raise InvalidSettings("Google setting 'scopes' must be a list of scope URLs")
    max_results = raw.get("max_results", MAX_RESULTS)
    if max_results is None:
        max_results = MAX_RESULTS
    if isinstance(max_results, bool) or not isinstance(max_results, int) or not 1 <= max_results <= MAX_RESULTS:
        raise InvalidSettings(f"Google setting 'max_results' must be an integer from 1 to {MAX_RESULTS}")
    return GoogleSettings(
        refresh_token=_text(raw, "refresh_token", required=True) or "",
        client_id=_text(raw, "client_id", required=True) or "",
        client_secret=_text(raw, "client_secret", required=False),
        token=_text(raw, "token", required=False),
        expiry=_expiry(raw.get("expiry")),
        scopes=tuple(scopes),
        calendar_id=_text(raw, "calendar_id", required=False) or "primary",
        max_results=max_results,
    )


def read_authorized_user_file(path: Path) -> dict[str, Any]:
    """Raw connection settings from an authorized-user JSON file (google-auth's or gcloud's format).

    Accepted keys: ``refresh_token``, ``client_id``, ``client_secret`` (required), ``token`` or
    ``access_token``, ``expiry``, ``scopes``. A ``token_uri`` in the file is ignored on purpose:
    the token endpoint is the operator's setting (ALLIANCE_GOOGLE_TOKEN_URL), never the file's.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidSettings(f"no such token file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidSettings(f"cannot read the token file {path}: {exc}") from None
    except ValueError:
        raise InvalidSettings(f"the token file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidSettings(f"the token file {path} must hold a JSON object")
    if data.get("type") not in (None, "authorized_user"):
        raise InvalidSettings(f"the token file {path} is a {data['type']!r} credential, not an authorized user's")
    missing = [k for k in ("refresh_token", "client_id", "client_secret") if not data.get(k)]
    if missing:
        raise InvalidSettings(f"the token file {path} lacks {', '.join(missing)}")
    raw: dict[str, Any] = {
        "refresh_token": data["refresh_token"],
        "client_id": data["client_id"],
        "client_secret": data["client_secret"],
        "token": data.get("token") or data.get("access_token"),
        "expiry": data.get("expiry"),
    }
    if data.get("scopes"):
        raw["scopes"] = data["scopes"]
    return raw


__all__ = [
    "DEFAULT_API_URL",
    "DEFAULT_AUTH_URL",
    "DEFAULT_TOKEN_URL",
    "MAX_RESULTS",
    "SCOPES",
    "GoogleOptions",
    "GoogleSettings",
    "parse_settings",
    "read_authorized_user_file",
]
