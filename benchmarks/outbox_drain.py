"""Outbox drain after a first mirror: the embedded worker delivering every new occurrence's event.

A first mirror of N events leaves N ``occurrence.created`` outbox events, each with one delivery
per subscribed handler (the rules that turn occurrences into sessions, the re-link of orphaned
sessions, the video lifecycle): 3 per event with the default settings. The embedded worker
(``core.jobs.InProcessRunner``, what ``alliance serve`` runs) works through them tick by tick;
until it has, a push's sync waits behind them and new sessions appear late.

In one run, alternating, each in a fresh interpreter on its own copy of the same mirrored SQLite
file (deliveries already relayed, so both start from the same rows):

    floor     the bare ``sqlite3`` module doing each delivery's bookkeeping I/O as the worker
              does, with no handler work: the claim (UPDATE ... RETURNING, commit), then the
              event's read, the "done" mark and the event's processed mark (commit)
    alliance  ``InProcessRunner.run_pending`` until nothing is left: the same bookkeeping plus
              each handler's own reads

    python -m benchmarks.outbox_drain [--events 5000] [--repeat 3] [--json FILE]

Figures: benchmarks/README.md ("Outbox drain").
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.harness import run_json_child


def _settings(home: Path) -> Any:
    from alliance.settings import Settings

    return Settings(home=home, timezone="Europe/Madrid")


def prepare(path: Path, events: int, key_text: str) -> int:
    """Mirror ``events`` occurrences into a new SQLite file and relay their events; the deliveries made."""
    from sqlalchemy import func, select

    from alliance.jobs import build_registry
    from benchmarks.engine_mirror import _pages, _Source
    from core.crypto import Keyring, MasterKeys
    from core.jobs.models import OutboxDelivery
    from core.jobs.outbox import relay
    from core.mirror import add_connection, ensure_therapist
    from core.store import Store
    from core.sync import sync_connection

    store = Store.open(f"sqlite:///{path}", keyring=Keyring(MasterKeys.from_env_value(key_text)))
    try:
        connection = add_connection(store, ensure_therapist(store, "bench@example.org"), "memory", "m", {})
        report = sync_connection(store, connection, _Source(_pages(events, 2500)))
        if report.created != events:
            raise RuntimeError(f"the mirror created {report.created} occurrences, not {events}")
        registry = build_registry(_settings(path.parent))
        now = datetime.now(UTC)
        while relay(store, registry, now, limit=5000):
            pass
        with store.session() as session:
            made = int(session.scalar(select(func.count()).select_from(OutboxDelivery)) or 0)
    finally:
        store.close()
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything into the one file that is copied
    db.close()
    return made


def _text(moment: datetime) -> str:
    # SQLAlchemy's SQLite DateTime text: naive UTC (core.store.models.UtcDateTime).
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def run_floor(path: Path) -> dict[str, Any]:
    """Each delivery's two transactions through the bare driver, no handler."""
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    started, cpu = time.perf_counter(), time.process_time()
    done = 0
    while True:
        now = _text(datetime.now(UTC))
        ids = [
            row[0]
            for row in db.execute(
                "SELECT id FROM outbox_deliveries WHERE status IN ('pending', 'running') AND next_attempt_at <= ?"
                " ORDER BY next_attempt_at, id LIMIT 100",
                (now,),
            )
        ]
        if not ids:
            break
        until = _text(datetime.now(UTC) + timedelta(minutes=10))
        for delivery_id in ids:
            db.execute("BEGIN IMMEDIATE")
            claimed = db.execute(
                "UPDATE outbox_deliveries SET status = 'running', attempts = attempts + 1, next_attempt_at = ?,"
                " updated_at = ? WHERE id = ? AND status IN ('pending', 'running') AND next_attempt_at <= ?"
                " RETURNING attempts, handler, event_id",
                (until, now, delivery_id, now),
            ).fetchone()
            db.execute("COMMIT")
            attempt, _handler, event_id = claimed
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "SELECT event_id, kind, therapist_id, connection_id, occurrence_id, payload, created_at"
                " FROM outbox WHERE event_id = ?",
                (event_id,),
            ).fetchone()
            db.execute(
                "UPDATE outbox_deliveries SET status = 'done', done_at = ?, updated_at = ?"
                " WHERE id = ? AND status = 'running' AND attempts = ?",
                (now, now, delivery_id, attempt),
            )
            db.execute(
                "UPDATE outbox SET processed_at = ? WHERE event_id = ? AND processed_at IS NULL AND NOT EXISTS"
                " (SELECT 1 FROM outbox_deliveries WHERE event_id = ? AND status != 'done')",
                (now, event_id, event_id),
            )
            db.execute("COMMIT")
            done += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    left = db.execute("SELECT count(*) FROM outbox WHERE processed_at IS NULL").fetchone()[0]
    db.close()
    return {"seconds": seconds, "cpu": cpu, "deliveries": done, "events_left": left}


def run_alliance(path: Path, key_text: str) -> dict[str, Any]:
    """The embedded worker's ticks until nothing is due."""
    from sqlalchemy import func, select

    from alliance.gc_tuning import tune_for_long_running_process
    from alliance.jobs import build_registry
    from core.crypto import Keyring, MasterKeys
    from core.jobs.models import DONE, OutboxDelivery
    from core.jobs.runner import InProcessRunner
    from core.store import OutboxEvent, Store

    tune_for_long_running_process()  # as `alliance serve` does
    store = Store.open(f"sqlite:///{path}", keyring=Keyring(MasterKeys.from_env_value(key_text)))
    try:
        runner = InProcessRunner(store, build_registry(_settings(path.parent)))
        started, cpu = time.perf_counter(), time.process_time()
        ran = 0
        while True:
            count = runner.run_pending()
            if not count:
                break
            ran += count
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        with store.session() as session:
            done = session.scalar(select(func.count()).select_from(OutboxDelivery).where(OutboxDelivery.status == DONE))
            left = session.scalar(
                select(func.count()).select_from(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
            )
        return {"seconds": seconds, "cpu": cpu, "deliveries": int(done or 0), "ran": ran, "events_left": int(left or 0)}
    finally:
        store.close()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_child"]:
        job = json.loads(sys.stdin.read())
        path = Path(job["path"])
        print(json.dumps(run_floor(path) if job["mode"] == "floor" else run_alliance(path, job["key"])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000, help="occurrences of the first mirror")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of floor + alliance, alternating")
    parser.add_argument("--json", type=Path, help="write every sample and the summary here")
    args = parser.parse_args(argv)
    if args.events < 1 or args.repeat < 1:
        parser.error("--events and --repeat must be at least 1")

    from core.crypto import generate_key_text

    key_text = generate_key_text()
    samples: dict[str, list[dict[str, Any]]] = {"floor": [], "alliance": []}
    with tempfile.TemporaryDirectory(prefix="alliance-drain-bench-") as tmp:
        base = Path(tmp) / "mirrored.db"
        deliveries = prepare(base, args.events, key_text)
        for round_ in range(args.repeat):
            for mode in ("floor", "alliance"):
                copy = Path(tmp) / f"{mode}-{round_}" / "mirror.db"
                copy.parent.mkdir()
                shutil.copyfile(base, copy)
                result = run_json_child("benchmarks.outbox_drain", {"mode": mode, "path": str(copy), "key": key_text})
                if result["deliveries"] != deliveries or result["events_left"]:
                    raise RuntimeError(
                        f"{mode}: {result['deliveries']} of {deliveries} deliveries done, "
                        f"{result['events_left']} events left unprocessed"
                    )
                samples[mode].append(result)
                shutil.rmtree(copy.parent)
    summary: dict[str, Any] = {"events": args.events, "deliveries": deliveries, "load": os.getloadavg()[0]}
    for mode, runs in samples.items():
        wall = statistics.median(r["seconds"] for r in runs)
        summary[mode] = {
            "seconds": wall,
            "cpu": statistics.median(r["cpu"] for r in runs),
            "ms_per_delivery": wall / deliveries * 1000,
            "deliveries_per_s": deliveries / wall,
        }
    ratio = summary["alliance"]["seconds"] / summary["floor"]["seconds"]
    summary["ratio"] = ratio
    print(
        f"outbox drain after a first mirror of {args.events} events: {deliveries} deliveries, "
        f"{args.repeat} rounds alternating, medians, load {summary['load']:.1f}"
    )
    print("| | time | CPU | per delivery | deliveries/s | vs floor |\n|---|---:|---:|---:|---:|---:|")
    for mode in ("floor", "alliance"):
        m = summary[mode]
        print(
            f"| {mode} | {m['seconds']:.2f} s | {m['cpu']:.2f} s | {m['ms_per_delivery']:.2f} ms "
            f"| {m['deliveries_per_s']:.0f} | {m['seconds'] / summary['floor']['seconds']:.2f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "samples": samples}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
