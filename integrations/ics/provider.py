"""The ICS provider: a read-only calendar published as an iCalendar file or feed URL."""

from __future__ import annotations

import hashlib
import json
import logging
import zoneinfo
from collections.abc import Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Self

from core.sync.types import ChangePage, RemoteOccurrence
from integrations.base.protocol import Capability, ProviderContext
from integrations.ics.cursor import IcsCursor, feed_digest
from integrations.ics.fetch import TIMEOUT_SECONDS, fetch
from integrations.ics.parse import parse_occurrences, resolve_zone
from integrations.ics.settings import IcsSettings, describe_source, parse_settings

log = logging.getLogger(__name__)

PAGE_SIZE = 1000
# Bump when the same bytes would now produce a different listing (a parsing fix), so existing
# cursors stop short-circuiting and the next sync re-reads the feed.
_LISTING_VERSION = 1


class IcsProvider:
    """Lists every occurrence of an ICS feed inside a window; never writes to it.

    An ICS feed has no change log, so every listing that does any work is complete (the engine
    mark-and-sweeps it). The cursor lets an unchanged feed (HTTP 304, or the same content, DTSTAMPs
    aside, on the same window day) cost one request and no parsing at all.
    """

    name: ClassVar[str] = "ics"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ_ONLY})

    def __init__(
        self,
        settings: IcsSettings,
        *,
        window: tuple[datetime, datetime],
        fallback_zone: zoneinfo.ZoneInfo,
        page_size: int = PAGE_SIZE,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.window = window
        self.fallback_zone = fallback_zone
        self.page_size = page_size
        self.timeout = timeout
        # What shapes a listing besides the bytes; a cursor made under other settings is not reused.
        self._fingerprint = hashlib.sha256(
            json.dumps(
                [_LISTING_VERSION, settings.source, (window[1] - window[0]).total_seconds(), fallback_zone.key]
            ).encode()
        ).hexdigest()[:32]

    @classmethod
    def normalize_settings(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate connection settings; raise :class:`InvalidSettings` naming the problem."""
        return parse_settings(raw).as_dict()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: ProviderContext) -> Self:
        """Build a provider for one connection.

        Floating times use the feed's X-WR-TIMEZONE, else the settings' ``timezone``, else the
        context's default zone (the therapist's).
        """
        # The file is checked at sync time instead: a feed file that vanished since the connection
        # was made is a sync failure to report (SourceError), not a settings problem.
        clean = parse_settings(settings, check_file=False)
        fallback = _fallback_zone(clean.timezone, context.default_timezone)
        # Days set on the connection win; otherwise the app-wide window the context carries.
        past = context.window_past if clean.window_past_days is None else timedelta(days=clean.window_past_days)
        future = context.window_future if clean.window_future_days is None else timedelta(days=clean.window_future_days)
        window = (context.now - past, context.now + future)
        return cls(clean, window=window, fallback_zone=fallback)

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """One empty page when nothing can have changed, else a complete listing in pages."""
        # An ICS source never raises CursorExpired: a cursor it cannot use just means "list all".
        previous = IcsCursor.loads(cursor)
        window_day = self.window[0].date().isoformat()
        usable = previous
        if previous is None or (previous.fingerprint, previous.window_day) != (self._fingerprint, window_day):
            usable = None  # other settings or a new window day: the old listing says nothing
        fetched = fetch(
            self.settings.source,
            etag=usable.etag if usable else None,
            last_modified=usable.last_modified if usable else None,
            max_bytes=self.settings.max_bytes,
            timeout=self.timeout,
            public_only=self.settings.public_only,
        )
        if fetched.body is None:
            # 304 Not Modified: only ever answered to our conditional request, so ``usable`` is set.
            if usable is None:  # pragma: no cover - fetch() refuses a 304 to a plain request
                raise RuntimeError("not-modified answer without a cursor")
            yield ChangePage(
                is_last=True, next_cursor=usable.with_validators(fetched.etag, fetched.last_modified).dumps()
            )
            return
        digest = feed_digest(fetched.body)
        next_cursor = IcsCursor(
            sha256=digest,
            window_day=window_day,
            fingerprint=self._fingerprint,
            etag=fetched.etag,
            last_modified=fetched.last_modified,
        ).dumps()
        if usable is not None and usable.sha256 == digest:
            # The same content (a server without validators, a spurious ETag change, or only new
            # DTSTAMPs): no work.
            log.debug("ICS feed at %s unchanged", describe_source(self.settings.source))
            yield ChangePage(is_last=True, next_cursor=next_cursor)
            return
        occurrences = parse_occurrences(fetched.body, self.window, self.fallback_zone)
        log.info(
            "ICS feed at %s: %d occurrence(s) in the window", describe_source(self.settings.source), len(occurrences)
        )
        yield from self._pages(occurrences, next_cursor)

    def _pages(self, occurrences: list[RemoteOccurrence], next_cursor: str) -> Iterator[ChangePage]:
        total = len(occurrences)
        starts = range(0, total, self.page_size) if total else range(1)
        last = starts[-1]
        for first in starts:
            is_last = first == last
            yield ChangePage(
                upserts=tuple(occurrences[first : first + self.page_size]),
                is_last=is_last,
                next_cursor=next_cursor if is_last else None,
                complete=True,
                window=self.window,
                total_hint=total,
            )


def _fallback_zone(configured: str | None, default: str) -> zoneinfo.ZoneInfo:
    for name in (configured, default):
        if name:
            zone = resolve_zone(name)
            if zone is not None:
                return zone
            log.warning("unknown time zone %r for floating times; trying the next fallback", name)
    return zoneinfo.ZoneInfo("UTC")


__all__ = ["PAGE_SIZE", "IcsProvider"]
