"""The Outlook (Microsoft 365) provider: a windowed calendarView delta, page by page.

- Without a usable cursor: ``GET /me/calendarView/delta?startDateTime&endDateTime`` over the
  context's window. Its pages are ``complete`` for the window (the engine mark-and-sweeps); the
  last one carries ``@odata.deltaLink``, kept whole in the cursor.
- With a cursor: the delta link as it is. Its pages hold changed instances and ``@removed`` ids.
  A 410 / ``SyncStateNotFound`` raises ``CursorExpired`` and the engine lists everything again.
- Skeletal occurrences are completed from their series master, fetched once per master per
  round as soon as a page names it, within the mailbox's request slots (integrations.outlook.client).
- Pages and masters are fetched ahead while the engine stores earlier pages (integrations.outlook.feed).
- ``@removed``: an id never mirrored is ignored (Graph also reports items outside the window
  that way). Which ids were mirrored, and as what, the engine's mirror says
  (:class:`core.sync.types.ConsultsMirror`), besides what this round itself listed. A mirrored
  one is looked up: gone (404) is a cancellation; still there means it moved out of the window,
  and its new time is mirrored instead.
- A complete listing is made again every :data:`RELIST_AFTER` or when the window changed: the
  delta's window is fixed when it starts, and time moves on.
- A round that fails half way leaves no cursor (``ChangePage.resumable`` False): the old delta
  link would never name as removed what the stored pages showed, so the next sync lists everything.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Self
from urllib.parse import quote

from core.sync.types import ChangePage, MirroredKeys, OccurrenceKey, RemoteOccurrence, SourceError
from integrations.base.protocol import Capability, ProviderContext
from integrations.base.writeback import TargetGone, WriteRefused
from integrations.outlook import writeback
from integrations.outlook.client import MAX_CONCURRENT, TIMEOUT_SECONDS, GraphClient, RetryPolicy, mailbox_slots
from integrations.outlook.cursor import OutlookCursor
from integrations.outlook.errors import DeltaExpired, NotFound, RequestRejected
from integrations.outlook.feed import PageFeed, page_items
from integrations.outlook.mapping import fast_occurrence, is_removed, master_id_of
from integrations.outlook.settings import OutlookOptions, OutlookSettings, parse_settings
from integrations.outlook.tokens import TokenManager

log = logging.getLogger(__name__)

RELIST_AFTER = timedelta(days=7)
DELTA_PATH = "/me/calendarView/delta"
_MAX_PAGES = 100_000  # a listing that pages on beyond this is a loop, not a calendar
_LISTING_RESTARTS = 3  # a complete listing whose skip token expired half way starts over


def _nothing_mirrored(provider_ids: Sequence[str]) -> dict[str, OccurrenceKey]:
    return {}


# Graph id -> the identity this round mirrored it as (None: this round found it deleted).
_RoundIds = dict[str, OccurrenceKey | None]


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@contextmanager
def _refusals() -> Iterator[None]:
    """A refusal retrying cannot fix (403, 400...) as the base ``WriteRefused``; a 412 that kept coming
    (:class:`~integrations.outlook.writeback.WriteConflict`) and a gone event pass through."""
    try:
        yield
    except (writeback.WriteConflict, TargetGone):
        raise
    except RequestRejected as exc:
        raise WriteRefused(str(exc)) from exc


class OutlookProvider:
    """Mirrors the primary calendar of one Microsoft 365 / Outlook.com mailbox and writes back join links."""

    name: ClassVar[str] = "outlook"
    # Only what is implemented, since capabilities are acted upon, never probed. WRITE_BACK: a
    # session's join link on its event (integrations.outlook.writeback); so not READ_ONLY any more.
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.WRITE_BACK})

    def __init__(
        self,
        settings: OutlookSettings,
        options: OutlookOptions,
        *,
        context: ProviderContext,
        retry: RetryPolicy | None = None,
        timeout: float = TIMEOUT_SECONDS,
    ) -> None:
        self.settings = settings
        self.now = context.now
        self.window = (
            context.now - context.window_past,
            context.now + context.window_future,
        )
        self.span = (int(context.window_past.total_seconds()), int(context.window_future.total_seconds()))
        self._save_settings = context.save_settings
        # Until the engine hands its mirror over (every sync does), no earlier round's id is known.
        self._mirrored: MirroredKeys = _nothing_mirrored
        self.tokens = TokenManager.for_connection(
            settings,
            options,
            on_cache_change=self._cache_changed,
            locked_settings=context.update_settings_locked,
        )
        self.client = GraphClient(
            self.tokens,
            graph_url=options.graph_url,
            mailbox=settings.mailbox,
            ca_bundle=options.ca_bundle,
            timeout=timeout,
            retry=retry,
            slots=mailbox_slots(options.slots_database_url),
        )

    @classmethod
    def normalize_settings(cls, raw: Mapping[str, Any]) -> dict[str, Any]:
        """Validate connection settings; raise :class:`InvalidSettings` naming the problem."""
        return parse_settings(raw).as_dict()

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], context: ProviderContext) -> Self:
        """Build the provider of one connection (authority, Graph URL and app from ``context.options``)."""
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
        options = OutlookOptions.from_mapping(context.options_for(cls.name))
        return cls(parse_settings(settings), options, context=context, retry=retry, timeout=timeout)

    def _cache_changed(self, serialized: str) -> None:
        self.settings = self.settings.with_cache(serialized)
        if self._save_settings is not None:
            self._save_settings(self.settings.as_dict())

    def write_join_link(self, provider_id: str, link: str) -> bool:
        """Put a session's join link on its event (If-Match, 412 re-read; see integrations.outlook.writeback)."""
        with _refusals():
            return writeback.write_join_link(self.client, provider_id, link).changed

    def remove_join_link(self, provider_id: str) -> bool:
        """Take Alliance's join-link block off the event (the meeting is gone)."""
        with _refusals():
            return writeback.remove_join_link(self.client, provider_id).changed

    def consult_mirror(self, mirrored: MirroredKeys) -> None:
        """Name ``@removed`` ids through the mirror (:class:`core.sync.types.ConsultsMirror`)."""
        self._mirrored = mirrored

    def _continues(self, cursor: OutlookCursor) -> bool:
        return cursor.span_seconds == self.span and timedelta(0) <= self.now - cursor.listed_at < RELIST_AFTER

    def list_changes(self, cursor: str | None) -> Iterator[ChangePage]:
        """A complete listing without a usable cursor, else the changes since it."""
        previous = OutlookCursor.loads(cursor)
        if previous is not None and not self._continues(previous):
            log.info("Outlook cursor made for another window or week; listing everything")
            previous = None
        if previous is not None:
            yield from self._round(previous.delta_link, previous.listed_at)
            return
        for attempt in range(_LISTING_RESTARTS):
            try:
                yield from self._round(None, self.now)
                return
            except DeltaExpired:
                # Only the first request of a complete listing carries no token; a skip token
                # lost half way means starting over (upserts are idempotent, the sweep waits).
                if attempt + 1 == _LISTING_RESTARTS:
                    raise SourceError("Outlook kept losing the listing's state; the next sync tries again") from None
                log.info("Outlook listing lost its skip token; starting over")

    def _round(self, delta_link: str | None, listed_at: datetime) -> Iterator[ChangePage]:
        """One delta round: the complete listing when ``delta_link`` is None.

        Pages and their series masters are fetched ahead while the engine stores earlier pages
        (:class:`~integrations.outlook.feed.PageFeed`), within the mailbox's request slots.
        """
        complete = delta_link is None
        params: dict[str, str] | None = (
            {"startDateTime": _iso(self.window[0]), "endDateTime": _iso(self.window[1])} if complete else None
        )
        feed = PageFeed(
            self._page,
            self._get_or_none,
            delta_link or DELTA_PATH,
            params,
            workers=MAX_CONCURRENT,
            max_pages=_MAX_PAGES,
            fetch_masters=self._masters_of,
        )
        listed: _RoundIds = {}
        with feed:
            for page in feed.pages():
                delta = page.get("@odata.deltaLink")
                is_last = isinstance(delta, str) and bool(delta)
                upserts, removals = self._changes(page_items(page), feed, listed)
                yield ChangePage(
                    upserts=tuple(upserts),
                    removals=tuple(removals),
                    is_last=is_last,
                    next_cursor=OutlookCursor(str(delta), listed_at, self.span).dumps() if is_last else None,
                    complete=complete,
                    window=self.window if complete else None,
                    # Graph's next round from the old delta link names as removed only what that
                    # round's own state delivered: what a half-done round stored would stay forever.
                    resumable=False,
                )

    def _page(self, url: str, params: dict[str, str] | None) -> dict[str, Any]:
        try:
            return self.client.get(url, params=params, page_size=self.settings.page_size, text_body=True)
        except DeltaExpired:
            if params is None:
                raise
            # The very first request of a complete listing carries no token to expire.
            raise SourceError("Outlook rejected a new listing as an expired delta state") from None

    def _changes(
        self, items: list[Mapping[str, Any]], feed: PageFeed, listed: _RoundIds
    ) -> tuple[list[RemoteOccurrence], list[OccurrenceKey]]:
        live = [i for i in items if not is_removed(i) and i.get("type") != "seriesMaster"]
        upserts: list[RemoteOccurrence] = []
        for item in live:
            master_id = master_id_of(item)
            master = feed.master(master_id) if master_id else None
            if master_id and master is None:
                continue  # the series is gone: Graph reports its instances as removed
            occurrence = fast_occurrence(item, master)
            if occurrence is not None:
                upserts.append(occurrence)
                listed[str(item["id"])] = occurrence.key
        known = self._known_removed([str(i["id"]) for i in items if is_removed(i) and i.get("id")], listed)
        removals: list[OccurrenceKey] = []
        for (graph_id, key), current in zip(known, self._lookup([g for g, _ in known]), strict=True):
            if current is None:
                removals.append(key)
                listed[graph_id] = None
                continue
            # Still there: it moved out of the window. Mirror where it went, under the same identity.
            master_id = master_id_of(current)
            occurrence = fast_occurrence(current, feed.master(master_id) if master_id else None)
            if occurrence is not None:
                upserts.append(replace(occurrence, key=key))
                listed[graph_id] = key
        return upserts, removals

    def _known_removed(self, graph_ids: list[str], listed: _RoundIds) -> list[tuple[str, OccurrenceKey]]:
        """The ``@removed`` ids that were mirrored, with their identity: this round's word first.

        The mirror is asked only about ids this round has not listed: its earlier pages may still
        be on their way to the database.
        """
        unlisted = [g for g in graph_ids if g not in listed]
        mirrored = self._mirrored(unlisted) if unlisted else {}
        known: list[tuple[str, OccurrenceKey]] = []
        for graph_id in graph_ids:
            key = listed[graph_id] if graph_id in listed else mirrored.get(graph_id)
            if key is not None:
                known.append((graph_id, key))
        return known

    def _get_or_none(self, graph_id: str) -> dict[str, Any] | None:
        try:
            return self.client.get(f"/me/events/{quote(graph_id, safe='')}", text_body=True)
        except NotFound:
            return None

    def _masters_of(self, master_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Series masters in one ``$batch`` call; one that failed there is asked for again on its own.

        404: the series is gone (None, as :meth:`_get_or_none` says). Anything else (a 429 or 5xx
        inside the batch, or a 424 after an earlier request of the batch failed) goes through the
        client's single request, with its retries and its errors.
        """
        paths = [f"/me/events/{quote(m, safe='')}" for m in master_ids]
        found: dict[str, dict[str, Any] | None] = {}
        for master_id, (status, body) in zip(master_ids, self.client.batch_get(paths, text_body=True), strict=True):
            if status == 200 and body is not None:
                found[master_id] = body
            elif status == 404:
                found[master_id] = None
            else:
                found[master_id] = self._get_or_none(master_id)
        return found

    def _lookup(self, graph_ids: list[str]) -> list[dict[str, Any] | None]:
        if len(graph_ids) <= 1:
            return [self._get_or_none(g) for g in graph_ids]
        with ThreadPoolExecutor(max_workers=MAX_CONCURRENT, thread_name_prefix="outlook") as pool:
            return list(pool.map(self._get_or_none, graph_ids))


__all__ = ["DELTA_PATH", "RELIST_AFTER", "OutlookProvider"]
