"""Delta pages and their series masters, fetched ahead of the engine that stores them.

A listing of 10,000 instances is 20 pages of 500. Graph (and the emulator) take about as long to
prepare a page as the engine takes to store one, so the two should run side by side without a gap:

- One thread follows the ``@odata.nextLink`` chain on its own, as soon as each page arrives, up to
  :data:`DEPTH` pages ahead of the engine (what bounds memory). Asking for the next page only once
  the engine took the previous one left Graph idle whenever a page took the engine longer. The
  first page is fetched in the engine's own thread (nothing to overlap with yet): a round of one
  page, what most syncs are, starts no thread unless it names series masters.
- The series masters a page's skeletal occurrences need are requested as soon as that page
  arrives (once per master per round, sorted, by a pool of ``workers`` threads), so they are
  fetched while the engine still stores earlier pages instead of after, with the engine waiting.
  Given ``fetch_masters``, a page's new masters go up to ``BATCH_LIMIT`` at a time in one call
  (Graph's ``$batch``): a listing naming 40 series costs two round trips instead of 40 (against
  the emulator, on loopback, ~7 % of a full mirror's CPU; see benchmarks/README.md).
  Requests still pass the mailbox's slots (at most 2 in flight, integrations.outlook.client).
- While the chain of pages runs, the masters use one thread fewer than ``workers``: a page naming
  40 masters otherwise had both mailbox slots taken by them, and the next page waited for the
  last of them (the whole chain is what a listing takes, the masters come along beside it). When
  the last page is in, the masters get every thread.

What the engine sees does not change: pages in order, the same checks on the links, and an error
(a lost skip token, a refused request, a page with no link) at the page where it happened, after
every page before it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from core.sync.types import SourceError
from integrations.outlook.client import BATCH_LIMIT
from integrations.outlook.mapping import is_removed, master_id_of

# Pages fetched and waiting for the engine (plus the one being fetched and the one being stored).
DEPTH = 2

Page = dict[str, Any]
FetchPage = Callable[[str, dict[str, str] | None], Page]
FetchMaster = Callable[[str], dict[str, Any] | None]
FetchMasters = Callable[[list[str]], dict[str, dict[str, Any] | None]]


class _Failure:
    __slots__ = ("error",)

    def __init__(self, error: Exception) -> None:
        self.error = error


def needed_masters(items: list[Mapping[str, Any]]) -> set[str]:
    """The series masters a page's live occurrences are completed from."""
    return {m for i in items if not is_removed(i) and i.get("type") != "seriesMaster" and (m := master_id_of(i))}


def page_items(page: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [i for i in page.get("value") or [] if isinstance(i, Mapping)]


class PageFeed:
    """The pages of one delta round, in order, fetched ahead; :meth:`master` gives their masters.

    Use as a context manager: leaving it stops the fetching (the engine may stop early) and waits
    for the requests in flight.
    """

    def __init__(
        self,
        fetch_page: FetchPage,
        fetch_master: FetchMaster,
        first_url: str,
        params: dict[str, str] | None,
        *,
        workers: int,
        max_pages: int,
        depth: int = DEPTH,
        fetch_masters: FetchMasters | None = None,
    ) -> None:
        self._fetch_page = fetch_page
        self._fetch_master = fetch_master
        self._fetch_masters = fetch_masters
        self._first = (first_url, params)
        self._max_pages = max_pages
        self._queue: queue.Queue[Page | _Failure] = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        # Master id -> the fetch that brings it: its own (key None) or a batch's (key: the id in it).
        self._masters: dict[str, tuple[Future[Any], str | None]] = {}
        self._masters_lock = threading.Lock()
        # Masters in flight while pages are still being fetched: all but one of the workers,
        # the rest released when the chain ends (_produce), so one slot is the chain's.
        self._master_gate = threading.Semaphore(max(1, workers - 1))
        self._chain_reserve = workers - max(1, workers - 1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="outlook")
        self._thread: threading.Thread | None = None  # started by pages() when there is a second page

    def __enter__(self) -> PageFeed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stop.set()
        # The fetching thread may be blocked handing over a page nobody will read: take them.
        while self._thread is not None and self._thread.is_alive():
            try:
                self._queue.get_nowait()
            except queue.Empty:
                self._thread.join(0.01)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def pages(self) -> Iterator[Page]:
        """Each page once, in order; the last carries ``@odata.deltaLink``. Raises what fetching raised."""
        url, params = self._first
        seen_links: set[str] = set()
        page = self._fetch_page(url, params)
        following = self._arrived(page, seen_links)
        if following is None:
            yield page
            return
        self._thread = threading.Thread(
            target=self._produce, args=(following, seen_links), name="outlook-page", daemon=True
        )
        self._thread.start()
        yield page
        while True:
            item = self._queue.get()
            if isinstance(item, _Failure):
                raise item.error
            yield item
            if _delta_link(item):
                return

    def request_masters(self, master_ids: set[str]) -> None:
        """Start fetching the masters not asked for yet in this round."""
        with self._masters_lock:
            wanted = sorted(master_ids - self._masters.keys())
            if self._fetch_masters is None or len(wanted) < 2:
                for master_id in wanted:
                    self._masters[master_id] = (self._pool.submit(self._gated_master, master_id), None)
                return
            for at in range(0, len(wanted), BATCH_LIMIT):  # as many as one $batch call takes
                chunk = wanted[at : at + BATCH_LIMIT]
                fetch = self._pool.submit(self._gated_masters, chunk)
                for master_id in chunk:
                    self._masters[master_id] = (fetch, master_id)

    def master(self, master_id: str) -> dict[str, Any] | None:
        """A series master (None: gone), fetched once per round; raises what fetching it raised."""
        self.request_masters({master_id})
        fetch, key = self._masters[master_id]
        found: dict[str, Any] | None = fetch.result() if key is None else fetch.result()[key]
        return found

    def _gated_master(self, master_id: str) -> dict[str, Any] | None:
        with self._master_gate:
            return self._fetch_master(master_id)

    def _gated_masters(self, master_ids: list[str]) -> dict[str, dict[str, Any] | None]:
        assert self._fetch_masters is not None  # only submitted when given
        with self._master_gate:
            found = self._fetch_masters(master_ids)
        missing = [m for m in master_ids if m not in found]
        if missing:
            raise SourceError(f"Outlook's batch of series masters left {len(missing)} of {len(master_ids)} out")
        return found

    def _produce(self, url: str, seen_links: set[str]) -> None:
        try:
            self._follow_chain(url, seen_links)
        finally:
            self._end_chain()

    def _end_chain(self) -> None:
        """No more pages to fetch: the chain's slot goes to the masters (once)."""
        reserve, self._chain_reserve = self._chain_reserve, 0
        for _ in range(reserve):
            self._master_gate.release()

    def _arrived(self, page: Page, seen_links: set[str]) -> str | None:
        """A page just fetched: its masters requested, and the next page's link (None: it was the last)."""
        following: str | None = None
        if _delta_link(page):
            self._end_chain()
        else:
            link = page.get("@odata.nextLink")
            if not isinstance(link, str) or not link:
                raise SourceError("Outlook sent a page with neither a next link nor a delta link")
            if link in seen_links:
                raise SourceError("Outlook repeated a page link; the listing was stopped")
            seen_links.add(link)
            following = link
        self.request_masters(needed_masters(page_items(page)))
        return following

    def _follow_chain(self, url: str, seen_links: set[str]) -> None:
        """The pages after the first (fetched by :meth:`pages`), each handed over as it arrives."""
        try:
            for _ in range(self._max_pages - 1):
                if self._stop.is_set():
                    return
                page = self._fetch_page(url, None)
                following = self._arrived(page, seen_links)
                self._queue.put(page)
                if following is None:
                    return
                url = following
            raise SourceError("Outlook kept sending pages; the listing was stopped")
        except Exception as exc:  # handed to the engine's thread, raised there in page order
            self._queue.put(_Failure(exc))


def _delta_link(page: Mapping[str, Any]) -> bool:
    delta = page.get("@odata.deltaLink")
    return isinstance(delta, str) and bool(delta)


__all__ = ["DEPTH", "PageFeed", "needed_masters", "page_items"]
