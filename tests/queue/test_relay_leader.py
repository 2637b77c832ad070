"""One process relays the outbox at a time; another takes over when it stops (real PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg

from alliance.queue.connect import conninfo
from alliance.queue.relay import OUTBOX_CHANNEL, listen


async def _until(check: object, what: str, seconds: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + seconds
    while not check():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.02)


def test_one_listener_relays_and_another_takes_over_when_it_stops(pg_url: str) -> None:
    relays: Counter[str] = Counter()

    async def notify() -> None:  # what the trigger on ``outbox`` sends for each insert
        async with await psycopg.AsyncConnection.connect(conninfo(pg_url), autocommit=True) as connection:
            await connection.execute(f"NOTIFY {OUTBOX_CHANNEL}")

    async def scenario() -> None:
        stops = {name: asyncio.Event() for name in ("first", "second")}

        def start(name: str) -> asyncio.Task[None]:
            return asyncio.create_task(
                listen(pg_url, lambda: relays.update([name]), stop=stops[name], leader_retry_seconds=0.1)
            )

        first = start("first")
        await _until(lambda: relays["first"] == 1, "the first listener relays what came before it listened")
        second = start("second")
        await asyncio.sleep(0.5)  # the second tries to lead, several times, and may not

        for expected in (2, 3, 4):
            await notify()
            await _until(lambda expected=expected: relays["first"] == expected, "the leader relays each notification")
        assert relays["second"] == 0  # it neither listened nor relayed: the leader had it all

        stops["first"].set()
        await first  # its connection closes, and the lock goes with it
        await _until(lambda: relays["second"] == 1, "the second takes over and relays what was left")
        await notify()
        await _until(lambda: relays["second"] == 2, "the new leader relays the next notification")
        assert relays["first"] == 4

        stops["second"].set()
        await second

    asyncio.run(scenario())
