"""The Google Calendar provider: complete listings over a window, then incremental ones by sync token.

- Without a usable cursor: ``events.list`` with ``singleEvents=true`` (Google expands series into
  instances), ``timeMin``/``timeMax`` from the context's window and ``maxResults`` up to 2500.
  Its pages are ``complete`` for that window (the engine mark-and-sweeps them); the last one
  carries ``nextSyncToken``, kept in the cursor with the parameters to repeat.
- With a cursor: the same parameters with ``syncToken`` and without ``timeMin``/``timeMax`` (not
  allowed together). Its pages hold upserts and removals; 410 raises ``CursorExpired`` and the
  engine falls back to a complete listing.
- A complete listing is also made again every :data:`RELIST_AFTER`, or when the window or the
  calendar changed: instances entering the far end of the window as time passes are not changes
  Google would report.
- ``eventTypes=default``: birthdays, working locations, out-of-office, focus time and events from
  Gmail are not appointments (the discovery doc allows ``eventTypes`` with ``syncToken``; the
  mapping filters them again in case Google ignores the parameter).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

from core.sync.types import ChangePage, SourceError
from integrations.base.protocol import Capability, InvalidSettings, ProviderContext
from integrations.google.client import TIMEOUT_SECONDS, CalendarClient, RetryPolicy
from integrations.google.cursor import GoogleCursor
from integrations.google.errors import SyncTokenExpired
from integrations.google.mapping import IdentityIndex, SeriesDeleted, is_cancelled, page_changes
from integrations.google.settings import GoogleOptions, GoogleSettings, parse_settings
from integrations.google.tokens import TokenManager, Tokens

log = logging.getLogger(__name__)

RELIST_AFTER = timedelta(days=7)
EVENT_TYPES = ("default",)
_MAX_PAGES = 100_000  # a listing that pages on beyond this is a loop, not a calendar


def _rfc3339(moment: datetime, *, round_up: bool = False) -> str:
    # Whole seconds (Google ignores fractions), rounded outwards so the listing covers the window.
    whole = moment.astimezone(UTC).replace(microsecond=0)
    if round_up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.isoformat().replace("+00:00", "Z")


class GoogleProvider:
    """Mirrors one Google calendar (read-only for now: push and write-back come later)."""

    name: ClassVar[str] = "google"
    # Only what is implemented: PUSH (events.watch) and WRITE_BACK (the join link) are declared
    # when they land, since capabilities are acted upon, never probed.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.READ_ONLY})

    def __init__(
        self,
        settings: GoogleSettings,
        options: GoogleOptions,
        *,
        context: ProviderContext,
        retry: RetryPolicy | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.now = context.now
        self.window = context.window
        self.span = (int(context.window_past.total_seconds()), int(context.window_future.total_seconds()))
        self._save_settings = context.save_settings
        secret = settings.secret(options)
        if secret is None:
            raise InvalidSettings(
                f"this Google connection was authorized for OAuth client {settings.client_id!r}; set "
                "ALLIANCE_GOOGLE_CLIENT_ID and ALLIANCE_GOOGLE_CLIENT_SECRET to that client, or connect again"
            )
        tokens = TokenManager.for_credential(
            token=settings.token,
            refresh_token=settings.refresh_token,
            expiry=settings.expiry,
            token_uri=options.token_url,
            client_id=settings.client_id,
            client_secret=secret,
            scopes=settings.scopes,
            timeout=timeout,
            on_refresh=self._tokens_refreshed,
        )
        self.client = CalendarClient(tokens, api_url=options.api_url, timeout=timeout, retry=retry)

    @classmethod
    def normalize_settings(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate connection settings; raise :class:`InvalidSettings` naming the problem."""
        return parse_settings(raw).as_dict()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: ProviderContext) -> Self:
        """Build the provider of one connection (endpoints and OAuth client from ``context.options``)."""
        return cls.build(settings, context)

    @classmethod
    def build(
        cls,
        settings: Mapping[str, Any],
        context: ProviderContext,
        *,
        retry: RetryPolicy | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> Self:
        """:meth:`from_settings` with the retry policy and timeout chosen (tests inject ``sleep``)."""
        options = GoogleOptions.from_mapping(context.options_for(cls.name))
        return cls(parse_settings(settings), options, context=context, retry=retry, timeout=timeout)

    def _tokens_refreshed(self, tokens: Tokens) -> None:
        self.settings = self.settings.with_tokens(tokens.token, tokens.expiry, tokens.refresh_token)
        if self._save_settings is not None:
            self._save_settings(self.settings.as_dict())

    def _params(self) -> dict[str, Any]:
        return {"singleEvents": True, "maxResults": self.settings.max_results, "eventTypes": list(EVENT_TYPES)}

    def _continues(self, cursor: GoogleCursor) -> bool:
        """Whether an incremental listing from ``cursor`` still describes this connection's window."""
        return (
            cursor.calendar_id == self.settings.calendar_id
            and cursor.span_seconds == self.span
            and timedelta(0) <= self.now - cursor.listed_at < RELIST_AFTER
        )

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """A complete listing without a usable cursor, else the changes since it."""
        previous = GoogleCursor.loads(cursor)
        if previous is not None and not self._continues(previous):
            log.info("Google cursor made for another calendar, window or week; listing everything")
            previous = None
        yield from self._listing(previous)

    def _listing(self, previous: GoogleCursor | None) -> Iterator[ChangePage]:
        complete = previous is None
        calendar_id = self.settings.calendar_id
        if previous is None:
            params = self._params()
            fixed: dict[str, Any] = {
                "timeMin": _rfc3339(self.window[0]),
                "timeMax": _rfc3339(self.window[1], round_up=True),
            }
            index = IdentityIndex()
            listed_at = self.now
        else:
            # The same parameters as the listing that produced the token; no timeMin/timeMax/orderBy.
            params = dict(previous.params)
            fixed = {"syncToken": previous.sync_token}
            index = IdentityIndex.from_json(previous.index.as_json())  # a copy: committed with the last page
            listed_at = previous.listed_at
        page_token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(_MAX_PAGES):
            page = self.client.list_events(calendar_id, **params, **fixed, pageToken=page_token)
            items = page.get("items") or []
            if complete:
                # The sweep cancels whatever a complete listing leaves out; tombstones add nothing.
                items = [i for i in items if isinstance(i, Mapping) and not is_cancelled(i)]
            try:
                changes = page_changes(items, page.get("timeZone") or "UTC", index)
            except SeriesDeleted as exc:
                raise SyncTokenExpired(
                    f"a deleted Google series ({exc}) can only be resolved by a full listing"
                ) from None
            next_page = page.get("nextPageToken")
            is_last = not next_page
            next_cursor = None
            if is_last:
                sync_token = page.get("nextSyncToken")
                if sync_token:
                    next_cursor = GoogleCursor(
                        str(sync_token), calendar_id, params, listed_at, self.span, index
                    ).dumps()
                else:
                    log.warning("Google sent no nextSyncToken; the next sync lists everything again")
            yield ChangePage(
                upserts=tuple(changes.upserts),
                removals=tuple(changes.removals),
                is_last=is_last,
                next_cursor=next_cursor,
                complete=complete,
                window=self.window if complete else None,
            )
            if is_last:
                return
            if next_page in seen_tokens:
                raise SourceError("Google Calendar repeated a page token; the listing was stopped")
            seen_tokens.add(str(next_page))
            page_token = str(next_page)
        raise SourceError("Google Calendar kept sending pages; the listing was stopped")


__all__ = ["EVENT_TYPES", "RELIST_AFTER", "GoogleProvider"]
