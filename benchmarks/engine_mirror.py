"""The sync engine's own cost of a first mirror: 10,000 occurrences, no provider, no network.

What a full mirror costs on top of the provider's paging (issues 4 and 5): content hashes,
sealing, the occurrence / history / outbox rows. The pages are built in memory beforehand (shaped
like the Google benchmark's calendar: single timed events, a title, a description, a zone), so the
clock sees only ``sync_connection`` and the store. Each run is a fresh interpreter and a fresh
store; CPU is this process's (on PostgreSQL the server's work is not in it, the wall time is).

    python -m benchmarks.engine_mirror [--events 10000] [--page 2500] [--repeat 5] [--default-gc] \
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

The child tunes the garbage collector after its imports as ``alliance sync`` does
(alliance/gc_tuning.py); ``--default-gc`` keeps the interpreter's defaults instead.

The PostgreSQL URL is an admin URL: a scratch database ``alliance_engine_<random>`` is created
for each run and dropped afterwards. Figures: benchmarks/README.md (Google and Outlook sections).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from benchmarks.harness import run_json_child


def _pages(events: int, per_page: int) -> list[Any]:
    import random

    from core.sync.types import ChangePage, OccurrenceKey, RemoteOccurrence

    rng = random.Random(7)
    now = datetime(2026, 1, 15, tzinfo=UTC)
    occurrences = []
    for i in range(events):
        start = now + timedelta(days=rng.randint(1, 300), hours=rng.randint(8, 19))
        occurrences.append(
            RemoteOccurrence(
                key=OccurrenceKey(f"ev{i:06d}@google.com"),
                start=start,
                end=start + timedelta(minutes=50),
                timezone="Europe/Madrid",
                provider_id=f"ev{i:06d}",
                title=f"Session {i}",
                description="Synthetic benchmark event",
            )
        )
    window = (now - timedelta(days=60), now + timedelta(days=365))
    return [
        ChangePage(
            upserts=tuple(occurrences[at : at + per_page]),
            is_last=at + per_page >= events,
            next_cursor="done" if at + per_page >= events else None,
            complete=True,
            window=window,
        )
        for at in range(0, events, per_page)
    ]


class _Source:
    def __init__(self, pages: list[Any]) -> None:
        self.pages = pages

    def list_changes(self, cursor: str | None) -> Any:
        return iter(self.pages)


def child(url: str, events: int, per_page: int, tuned_gc: bool = False) -> dict[str, Any]:
    """One first mirror into the empty store at ``url``: seconds, CPU seconds, rows."""
    from sqlalchemy import func, select

    from core.crypto import Keyring, MasterKeys, generate_key_text
    from core.mirror import add_connection, ensure_therapist
    from core.store import OutboxEvent, Store
    from core.store.models import Occurrence, OccurrenceHistory
    from core.sync import sync_connection

    if tuned_gc:
        from alliance.gc_tuning import tune_for_long_running_process

        tune_for_long_running_process()

    store = Store.open(url, keyring=Keyring(MasterKeys.from_env_value(generate_key_text())))
    try:
        connection = add_connection(store, ensure_therapist(store, "bench@example.org"), "memory", "m", {})
        pages = _pages(events, per_page)
        started, cpu = time.perf_counter(), time.process_time()
        report = sync_connection(store, connection, _Source(pages))
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        with store.session() as session:
            rows = sum(
                session.scalar(select(func.count()).select_from(table)) or 0
                for table in (Occurrence, OccurrenceHistory, OutboxEvent)
            )
        return {"seconds": seconds, "cpu": cpu, "created": report.created, "rows": rows}
    finally:
        store.close()


def _admin(url: str, statement: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def _run_child(url: str, events: int, per_page: int, tuned_gc: bool) -> dict[str, Any]:
    job = {"url": url, "events": events, "page": per_page, "tuned_gc": tuned_gc}
    return run_json_child("benchmarks.engine_mirror", job)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        job = json.loads(sys.stdin.read())
        print(json.dumps(child(job["url"], job["events"], job["page"], job.get("tuned_gc", False))))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=2500, help="occurrences per page (Google's maxResults)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--postgres", help="admin URL; a scratch database is created per run and dropped")
    parser.add_argument("--default-gc", action="store_true", help="keep the interpreter's collector settings")
    args = parser.parse_args(argv)
    tuned = not args.default_gc
    samples: dict[str, list[dict[str, Any]]] = {"sqlite": []} | ({"postgresql": []} if args.postgres else {})
    with tempfile.TemporaryDirectory(prefix="alliance-engine-bench-") as tmp:
        for round_ in range(args.repeat):
            samples["sqlite"].append(_run_child(f"sqlite:///{tmp}/mirror{round_}.db", args.events, args.page, tuned))
            if args.postgres:
                name = f"alliance_engine_{secrets.token_hex(4)}"
                _admin(args.postgres, f'CREATE DATABASE "{name}"')
                try:
                    scratch = args.postgres.rsplit("/", 1)[0] + f"/{name}"
                    samples["postgresql"].append(_run_child(scratch, args.events, args.page, tuned))
                finally:
                    _admin(args.postgres, f'DROP DATABASE "{name}"')
    load = os.getloadavg()[0]
    print(
        f"first mirror of {args.events} occurrences, pages of {args.page}, {args.repeat} runs, load {load:.1f}, "
        f"collector {'tuned (alliance/gc_tuning.py)' if tuned else 'defaults'}"
    )
    print("| backend | median s | median CPU s | CPU us per occurrence | rows |\n|---|---:|---:|---:|---:|")
    for backend, runs in samples.items():
        if any(r["created"] != args.events or r["rows"] != 3 * args.events for r in runs):
            raise RuntimeError(f"{backend}: a run did not create {args.events} occurrences, their history and events")
        wall = statistics.median(r["seconds"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        print(f"| {backend} | {wall:.3f} | {cpu:.3f} | {cpu / args.events * 1e6:.0f} | {runs[0]['rows']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
