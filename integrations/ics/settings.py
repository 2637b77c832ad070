"""Connection settings of an ICS feed: validation, and how a source may be named in messages."""

from __future__ import annotations

import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from integrations.base.protocol import InvalidSettings

DEFAULT_MAX_BYTES = 50 * 1024 * 1024

_KNOWN_KEYS = frozenset({"source", "window_past_days", "window_future_days", "timezone", "max_bytes", "public_only"})
# webcal:// is the de-facto "subscribe to this calendar" scheme (Apple, Google, Outlook all emit
# it); it has no protocol of its own, it is plain HTTPS.
_WEBCAL_SCHEMES = frozenset({"webcal", "webcals"})
_HTTP_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class IcsSettings:
    """Clean settings of one ICS connection."""

    source: str  # an absolute file path or an http(s) URL
    # None: the context's window (the app-wide setting, 60 / 365 days by default).
    window_past_days: int | None = None
    window_future_days: int | None = None
    timezone: str | None = None
    max_bytes: int = DEFAULT_MAX_BYTES
    # Set on feeds added through the web API: fetch from public internet addresses only.
    public_only: bool = False

    @property
    def is_url(self) -> bool:
        return is_url(self.source)

    def as_dict(self) -> dict[str, Any]:
        clean: dict[str, Any] = {
            "source": self.source,
            "window_past_days": self.window_past_days,
            "window_future_days": self.window_future_days,
            "timezone": self.timezone,
            "max_bytes": self.max_bytes,
        }
        if self.public_only:  # only when set: the settings of every other feed stay as they were
            clean["public_only"] = True
        return clean


def is_url(source: str) -> bool:
    return urlsplit(source).scheme.lower() in _HTTP_SCHEMES


def describe_source(source: str) -> str:
    """Name a source for messages and logs without leaking what makes a feed URL secret.

    Secret iCal addresses carry their secret in the path (Google's ``.../private-<token>/basic.ics``)
    or the query string (Outlook's, Apple's shared links), so a URL is shown as scheme and host only.
    """
    if not is_url(source):
        return source
    parts = urlsplit(source)
    host = parts.hostname or "?"
    if ":" in host:  # an IPv6 literal needs its brackets back
        host = f"[{host}]"
    port = f":{parts.port}" if _safe_port(source) is not None else ""
    return f"{parts.scheme.lower()}://{host}{port}"


def _safe_port(source: str) -> int | None:
    try:
        return urlsplit(source).port
    except ValueError:
        return None


def _clean_source(raw: object, *, check_file: bool) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise InvalidSettings("the ICS provider needs a 'source': an absolute file path or an http(s) URL")
    text = raw.strip()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme in _WEBCAL_SCHEMES:
        parts = parts._replace(scheme="https")
        scheme = "https"
    if scheme in _HTTP_SCHEMES:
        if not parts.hostname:
            raise InvalidSettings(f"the ICS source URL {scheme}:// has no host name")
        try:
            parts.port  # noqa: B018 - urlsplit checks the port lazily, on access
        except ValueError:
            raise InvalidSettings(f"the ICS source URL {scheme}://{parts.hostname} has an invalid port") from None
        return urlunsplit(parts._replace(scheme=scheme))
    if scheme == "file":
        text = parts.path
    elif scheme and len(scheme) > 1:  # one letter would be a Windows drive ("C:\...")
        raise InvalidSettings(
            f"the ICS source scheme '{scheme}://' is not supported (use a file path, http://, https:// or webcal://)"
        )
    path = Path(text).expanduser()
    try:
        path = path.resolve()
    except OSError as exc:
        raise InvalidSettings(f"the ICS source path {text} cannot be resolved: {exc.strerror}") from None
    if check_file:
        if not path.exists():
            raise InvalidSettings(f"the ICS source file {path} does not exist")
        if not path.is_file():
            raise InvalidSettings(f"the ICS source {path} is not a file")
    return str(path)


def _days(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    # bool is an int subclass, and "window_past_days: true" is certainly a mistake.
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise InvalidSettings(f"'{key}' must be a whole number of days, 0 or more (got {value!r})")
    return value


def _timezone(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidSettings(f"'timezone' must be an IANA time zone name such as Europe/Madrid (got {value!r})")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise InvalidSettings(
            f"unknown time zone {value!r} in 'timezone' (use an IANA name such as Europe/Madrid)"
        ) from None
    return value


def _max_bytes(value: object) -> int:
    if value is None:
        return DEFAULT_MAX_BYTES
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidSettings(f"'max_bytes' must be a positive whole number of bytes (got {value!r})")
    return value


def parse_settings(raw: Mapping[str, Any], *, check_file: bool = True) -> IcsSettings:
    """Validate raw settings; ``check_file=False`` skips the "the file exists" check (sync time)."""
    if not isinstance(raw, Mapping):
        raise InvalidSettings("the ICS provider settings must be a mapping")
    unknown = sorted(str(k) for k in raw if k not in _KNOWN_KEYS)
    if unknown:
        raise InvalidSettings(f"unknown ICS setting(s) {', '.join(unknown)} (known: {', '.join(sorted(_KNOWN_KEYS))})")
    public_only = raw.get("public_only", False)
    if not isinstance(public_only, bool):
        raise InvalidSettings(f"'public_only' must be true or false (got {public_only!r})")
    clean = IcsSettings(
        source=_clean_source(raw.get("source"), check_file=check_file and not public_only),
        window_past_days=_days(raw, "window_past_days"),
        window_future_days=_days(raw, "window_future_days"),
        timezone=_timezone(raw.get("timezone")),
        max_bytes=_max_bytes(raw.get("max_bytes")),
        public_only=public_only,
    )
    if public_only and not clean.is_url:
        raise InvalidSettings("a feed limited to public addresses must be an http(s) or webcal URL")
    return clean


__all__ = ["DEFAULT_MAX_BYTES", "IcsSettings", "describe_source", "is_url", "parse_settings"]
