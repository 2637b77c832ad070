"""Group commit for webhook events: concurrent deliveries share one transaction.

Each request awaits the commit that contains its event, so a 200 still means "stored"; but while
one batch is being written the next deliveries queue up in memory and go in the next single
transaction, instead of each request taking its own thread and waiting on the database lock
(SQLite allows one writer; its busy handler sleeps in growing steps, which showed as a p99 of
over a second under load).

The batch is written in a worker thread, one hop per batch rather than per request: a batch is
one INSERT of a few rows, but on SQLite it may have to wait for the lock while a sync or the job
worker writes, and waiting on the event loop would stall every other request of the process
(pages, the API, health checks) for that long. Meanwhile new deliveries queue up for the next
batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = ["GroupCommit"]

T = TypeVar("T")


class GroupCommit(Generic[T]):
    """Collects items from concurrent requests and writes them with ``write(batch)`` (one transaction).

    ``write`` may return one result per item, in the batch's order (what each request answers,
    e.g. a refused push ping among accepted ones); each :meth:`submit` returns its item's. A batch
    whose write fails is written again item by item, so only the item that fails raises.
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[Any] | None], max_batch: int = 256) -> None:
        self._write = write
        self._max = max_batch
        self._pending: list[tuple[T, asyncio.Future[Any]]] = []
        self._flushing = False

    async def submit(self, item: T) -> Any:
        """Wait until ``item`` is committed (or its batch failed: then this raises); its result."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[: self._max], self._pending[self._max :]
                await self._write_batch(batch)
        finally:
            self._flushing = False

    async def _write_batch(self, batch: list[tuple[T, asyncio.Future[Any]]]) -> None:
        try:
            results = await asyncio.to_thread(self._write, [item for item, _ in batch])
        except Exception as exc:
            if len(batch) == 1:  # its waiter gets the failure (-> 500, the sender retries)
                _settle(batch, exc)
                return
            # Perhaps one item is what failed: each again on its own, so that one fails alone
            # rather than every request that shared its batch, on each of the senders' retries.
            for entry in batch:
                await self._write_batch([entry])
            return
        if results is not None and len(results) != len(batch):  # never leave a waiter hanging
            _settle(batch, RuntimeError(f"the batch writer gave {len(results)} results for {len(batch)} items"))
            return
        for index, (_, future) in enumerate(batch):
            if not future.done():
                future.set_result(None if results is None else results[index])


def _settle(batch: list[tuple[Any, asyncio.Future[Any]]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
