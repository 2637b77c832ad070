"""The Google Calendar provider: complete listings over a window, then incremental ones by sync token.

- Without a usable cursor: ``events.list`` with ``singleEvents=true`` (Google expands series into
  instances), ``timeMin``/``timeMax`` from the context's window and ``maxResults`` up to 2500.
  Its pages are ``complete`` for that window (the engine mark-and-sweeps them); the last one
  carries ``nextSyncToken``, kept in the cursor with the parameters to repeat.
- With a cursor: the same parameters with ``syncToken`` and without ``timeMin``/``timeMax`` (not
  allowed together). Its pages hold upserts and removals; 410 raises ``CursorExpired`` and the
  engine falls back to a complete listing.
- A delta never reports the instances a series loses when it is moved or cut short ("this and
  following events"). Each series a delta touches is listed again (``events.instances`` over the
  window) as a page complete for its UID, so the engine cancels the vanished instances.
- A complete listing is also made again every :data:`RELIST_AFTER`, or when the window or the
  calendar changed: instances entering the far end of the window as time passes are not changes
  Google would report.
- ``eventTypes=default``: birthdays, working locations, out-of-office, focus time and events from
  Gmail are not appointments (the discovery doc allows ``eventTypes`` with ``syncToken``; the
  mapping filters them again in case Google ignores the parameter).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self

from core.sync.types import ChangePage, OccurrenceKey, RemoteOccurrence, SourceError
from integrations.base.protocol import Capability, InvalidSettings, ProviderContext
from integrations.base.push import OpenedChannel
from integrations.base.writeback import TargetGone, WriteRefused
from integrations.google import push, writeback
from integrations.google.client import TIMEOUT_SECONDS, CalendarClient, RetryPolicy
from integrations.google.cursor import GoogleCursor
from integrations.google.errors import NotFound, RequestRejected, SyncTokenExpired
from integrations.google.mapping import IdentityIndex, page_changes
from integrations.google.settings import GoogleOptions, GoogleSettings, parse_settings
from integrations.google.tokens import TokenManager, Tokens

log = logging.getLogger(__name__)

RELIST_AFTER = timedelta(days=7)
EVENT_TYPES = ("default",)
_MAX_PAGES = 100_000  # a listing that pages on beyond this is a loop, not a calendar
# Relisting a changed series costs one request; beyond this many, one complete listing is cheaper.
MAX_SERIES_RELISTS = 20


def _rfc3339(moment: datetime, *, round_up: bool = False) -> str:
    # Whole seconds (Google ignores fractions), rounded outwards so the listing covers the window.
    whole = moment.astimezone(UTC).replace(microsecond=0)
    if round_up and whole < moment:
        whole += timedelta(seconds=1)
    return whole.isoformat().replace("+00:00", "Z")


@contextmanager
def _refusals() -> Iterator[None]:
    """A refusal retrying cannot fix (403 forbiddenForNonOrganizer, 400...) as the base ``WriteRefused``;
    a 412 that kept coming (:class:`~integrations.google.writeback.WriteConflict`) stays retryable."""
    try:
        yield
    except (writeback.WriteConflict, TargetGone):
        raise
    except RequestRejected as exc:
        raise WriteRefused(str(exc)) from exc


class GoogleProvider:
    """Mirrors one Google calendar, keeps a push channel on it, and writes back join links."""

    name: ClassVar[str] = "google"
    # Only what is implemented, since capabilities are acted upon, never probed. PUSH: events.watch
    # channels (integrations.google.push). WRITE_BACK: a session's join link on its event
    # (integrations.google.writeback); so not READ_ONLY any more.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.PUSH, Capability.WRITE_BACK})

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

    # -- push (PushSource) -----------------------------------------------------------------------
    def open_channel(self, *, channel_id: str, address: str, token: str, expires_at: datetime) -> OpenedChannel:
        """Open an ``events.watch`` channel on this connection's calendar."""
        return push.open_channel(
            self.client,
            self.settings.calendar_id,
            channel_id=channel_id,
            address=address,
            token=token,
            expires_at=expires_at,
            event_types=EVENT_TYPES,
        )

    def close_channel(self, channel_id: str, resource_id: str) -> None:
        """``channels.stop``."""
        push.close_channel(self.client, channel_id, resource_id)

    # -- write-back (JoinLinkWriter) --------------------------------------------------------------
    def write_join_link(self, provider_id: str, link: str) -> bool:
        """Put a session's join link on its event (If-Match, 412 re-read; see integrations.google.writeback)."""
        with _refusals():
            return writeback.write_join_link(self.client, self.settings.calendar_id, provider_id, link).changed

    def remove_join_link(self, provider_id: str) -> bool:
        """Take Alliance's join-link block off the event (the meeting is gone)."""
        with _refusals():
            return writeback.remove_join_link(self.client, self.settings.calendar_id, provider_id).changed

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
        if previous is None:
            yield from self._complete_listing()
        else:
            yield from self._incremental_listing(previous)

    def _window_params(self) -> dict[str, str]:
        return {"timeMin": _rfc3339(self.window[0]), "timeMax": _rfc3339(self.window[1], round_up=True)}

    def _pages(self, fetch: Callable[[str | None], dict[str, Any]]) -> Iterator[dict[str, Any]]:
        """Every page of one listing (``fetch`` gets the page token), guarding against loops.

        The next page is requested as soon as its token is known, while the engine stores this
        one: a full mirror then takes about max(network, storing) instead of their sum. One
        request is in flight at a time, as before, so the client needs no locking. The first page
        is fetched in the calling thread (nothing to overlap with yet), so a listing of one page,
        what most syncs are, starts no thread at all.
        """
        seen_tokens: set[str] = set()
        page = fetch(None)
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="google-pages") as pool:
            for _ in range(_MAX_PAGES):
                next_page = page.get("nextPageToken")
                pending = None
                if next_page:
                    if next_page in seen_tokens:
                        raise SourceError("Google Calendar repeated a page token; the listing was stopped")
                    seen_tokens.add(str(next_page))
                    pending = pool.submit(fetch, str(next_page))
                yield page
                if pending is None:
                    return
                page = pending.result()
        raise SourceError("Google Calendar kept sending pages; the listing was stopped")

    def _cursor(
        self, page: dict[str, Any], params: dict[str, Any], listed_at: datetime, index: IdentityIndex
    ) -> str | None:
        sync_token = page.get("nextSyncToken")
        if not sync_token:
            log.warning("Google sent no nextSyncToken; the next sync lists everything again")
            return None
        return GoogleCursor(str(sync_token), self.settings.calendar_id, params, listed_at, self.span, index).dumps()

    def _complete_listing(self) -> Iterator[ChangePage]:
        calendar_id = self.settings.calendar_id
        params = self._params()
        index = IdentityIndex()
        pages = self._pages(
            lambda token: self.client.list_events(calendar_id, **params, **self._window_params(), pageToken=token)
        )
        for page in pages:
            # The sweep cancels whatever a complete listing leaves out; tombstones add nothing.
            changes = page_changes(page.get("items") or [], page.get("timeZone") or "UTC", index, tombstones=False)
            is_last = not page.get("nextPageToken")
            yield ChangePage(
                upserts=tuple(changes.upserts),
                is_last=is_last,
                next_cursor=self._cursor(page, params, self.now, index) if is_last else None,
                complete=True,
                window=self.window,
            )

    def _incremental_listing(self, previous: GoogleCursor) -> Iterator[ChangePage]:
        calendar_id = self.settings.calendar_id
        # The same parameters as the listing that produced the token; no timeMin/timeMax/orderBy.
        params = dict(previous.params)
        index = IdentityIndex.from_json(previous.index.as_json())  # a copy: committed with the last page
        pages = self._pages(
            lambda token: self.client.list_events(calendar_id, **params, syncToken=previous.sync_token, pageToken=token)
        )
        # Read the whole delta first (it is small unless much changed): whether to relist some
        # series, or everything, is known only at its end.
        deltas: list[ChangePage] = []
        touched: dict[str, str] = {}
        zone = "UTC"
        last: dict[str, Any] = {}
        for page in pages:
            zone = page.get("timeZone") or zone
            changes = page_changes(page.get("items") or [], zone, index)
            touched.update(changes.series)
            deltas.append(ChangePage(upserts=tuple(changes.upserts), removals=tuple(changes.removals), is_last=False))
            last = page
        if len(touched) > MAX_SERIES_RELISTS:
            log.info("%d Google series changed; listing everything instead", len(touched))
            yield from self._complete_listing()
            return
        pieces = deltas + [self._series_page(series_id, uid, zone, index, deltas) for series_id, uid in touched.items()]
        cursor = self._cursor(last, params, previous.listed_at, index)
        for number, piece in enumerate(pieces, start=1):
            yield replace(piece, is_last=True, next_cursor=cursor) if number == len(pieces) else piece

    def _series_page(
        self, series_id: str, uid: str, zone: str, index: IdentityIndex, deltas: list[ChangePage]
    ) -> ChangePage:
        """Every instance one series has in the window now, as a page complete for its UID."""
        calendar_id = self.settings.calendar_id
        listed: dict[OccurrenceKey, RemoteOccurrence] = {}
        try:
            for page in self._pages(
                lambda token: self.client.list_instances(
                    calendar_id,
                    series_id,
                    maxResults=self.settings.max_results,
                    pageToken=token,
                    **self._window_params(),
                )
            ):
                for occurrence in page_changes(page.get("items") or [], page.get("timeZone") or zone, index).upserts:
                    listed[occurrence.key] = occurrence
        except (NotFound, SyncTokenExpired):
            # 404 / 410 "deleted": the series is gone, so none of its instances remain.
            index.forget(series_id)
        # A series turned into a single event has no instances, only itself: the delta showed it.
        # Instances come from events.instances alone: a delta may still show an exception whose
        # original slot the series no longer has (moved after the exception was made).
        for delta in deltas:
            for occurrence in delta.upserts:
                if occurrence.key.ical_uid == uid and not occurrence.key.recurrence_id:
                    listed.setdefault(occurrence.key, occurrence)
        return ChangePage(upserts=tuple(listed.values()), is_last=False, window=self.window, complete_uids=(uid,))


__all__ = ["EVENT_TYPES", "MAX_SERIES_RELISTS", "RELIST_AFTER", "GoogleProvider"]
