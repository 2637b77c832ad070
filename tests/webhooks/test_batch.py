"""The group commit shared by the webhooks: results per request, and a failure confined to its item."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from webhooks.batch import GroupCommit


class Refused(Exception):
    pass


def test_each_request_gets_its_own_result_and_a_failing_item_fails_alone() -> None:
    writes: list[list[str]] = []

    def write(batch: Sequence[str]) -> list[str]:
        writes.append(list(batch))
        if "bad" in batch:  # one transaction: the whole batch rolls back with it
            raise Refused("a row refused")
        return [item.upper() for item in batch]

    async def main() -> list[object]:
        group: GroupCommit[str] = GroupCommit(write)
        items = ["a", "b", "bad", "c", "d"]
        results: list[object] = await asyncio.gather(*(group.submit(i) for i in items), return_exceptions=True)
        return results

    results = asyncio.run(main())

    assert results[:2] == ["A", "B"] and results[3:] == ["C", "D"]
    assert isinstance(results[2], Refused)
    assert writes[0] == ["a", "b", "bad", "c", "d"]  # together first, then each on its own
    assert sorted(map(tuple, writes[1:])) == [("a",), ("b",), ("bad",), ("c",), ("d",)]


def test_a_writer_that_answers_for_fewer_items_fails_them_instead_of_leaving_them_waiting() -> None:
    async def main() -> list[object]:
        group: GroupCommit[int] = GroupCommit(lambda batch: list(batch)[:-1])
        return await asyncio.wait_for(asyncio.gather(*(group.submit(i) for i in range(3)), return_exceptions=True), 10)

    results = asyncio.run(main())
    assert all(isinstance(r, RuntimeError) for r in results)


def test_a_writer_without_results_resolves_every_request_with_none() -> None:
    async def main() -> list[object]:
        group: GroupCommit[int] = GroupCommit(lambda batch: None)
        results: list[object] = await asyncio.gather(*(group.submit(i) for i in range(4)))
        return results

    assert asyncio.run(main()) == [None] * 4


def test_a_single_item_that_fails_raises_once() -> None:
    calls: list[int] = []

    def write(batch: Sequence[int]) -> None:
        calls.append(len(batch))
        raise Refused("disk full")

    async def main() -> None:
        await GroupCommit(write).submit(1)

    with pytest.raises(Refused):
        asyncio.run(main())
    assert calls == [1]  # not written again
