"""The composition (periodic sync of every connection), the embedded worker, and ``alliance jobs``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from alliance.jobs import DELIVER_MAIL, PRUNE_FINISHED, PUSH_RENEW, SYNC_ALL, SYNC_CONNECTION, build_registry
from alliance.reconcile import sync_key
from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.jobs import DONE, PARKED, Event, InProcessRunner, JobRegistry, OutboxDelivery, RetryPolicy
from core.jobs.spread import next_slot
from core.mirror import add_connection, ensure_therapist
from core.store import Occurrence, OutboxEvent, Store
from core.store.db import make_engine
from core.store.models import Connection


def _ics(*events: tuple[str, datetime, str]) -> str:
    body = "".join(
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start:%Y%m%dT%H%M%SZ}\r\n"
        f"DTEND:{start + timedelta(minutes=50):%Y%m%dT%H%M%SZ}\r\nSUMMARY:{title}\r\nEND:VEVENT\r\n"
        for uid, start, title in events
    )
    return f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Alliance tests//EN\r\n{body}END:VCALENDAR\r\n"


def _soon(days: int) -> datetime:
    return (datetime.now(UTC) + timedelta(days=days)).replace(hour=9, minute=0, second=0, microsecond=0)


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {"home": tmp_path / "home", "timezone": "Europe/Madrid", "sync_interval_minutes": 10}
    # These tests count the periodic sync's runs: the video jobs (issue 6) run on their own, rarely.
    values.update(video_events_seconds=3600, video_sweep_seconds=24 * 3600)
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


def _occurrences(store: Store) -> int:
    with store.session() as session:
        return session.scalar(select(func.count()).select_from(Occurrence)) or 0


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def _last_sync(store: Store) -> datetime:
    with store.session() as session:
        value = session.scalar(select(Connection.last_sync_at))
    assert value is not None
    return value


def test_the_reconciliation_syncs_a_new_connection_at_once_then_at_its_own_slot(store: Store, tmp_path: Path) -> None:
    feed = tmp_path / "calendar.ics"
    feed.write_text(_ics(("a@test", _soon(2), "Session")))
    therapist = ensure_therapist(store, "therapist@localhost", timezone="Europe/Madrid")
    connection = add_connection(store, therapist, "ics", "calendar", {"source": str(feed)})
    settings = _settings(tmp_path)
    t0 = datetime.now(UTC)
    clock = Clock(t0)
    # random 0.5: the sweep (every minute) seen for the first time runs half a minute later.
    registry = build_registry(settings, clock=clock)
    runner = InProcessRunner(store, registry, policy=RetryPolicy(random=lambda: 0.5), clock=clock)

    runner.run_pending()
    assert _occurrences(store) == 0
    runner.run_pending(t0 + timedelta(seconds=29))  # other periodic jobs (mail) may run
    assert _occurrences(store) == 0
    # A connection never synced is synced by the first sweep, in the same tick.
    clock.now = t0 + timedelta(seconds=30)
    runner.run_pending()
    assert _occurrences(store) == 1

    # Then once per interval, at the connection's own phase of it (core.jobs.spread).
    feed.write_text(_ics(("a@test", _soon(2), "Session"), ("b@test", _soon(3), "Supervision")))
    slot = next_slot(sync_key(connection), _last_sync(store), timedelta(minutes=10))
    assert timedelta(0) < slot - _last_sync(store) <= timedelta(minutes=10)
    # The sweep runs every minute from t0 + 90 s; the worker ticks once a minute too.
    tick = t0 + timedelta(seconds=90)
    synced_at = None
    while tick < slot + timedelta(minutes=12):
        clock.now = tick
        runner.run_pending(tick)
        if _occurrences(store) == 2:
            synced_at = tick
            break
        tick += timedelta(minutes=1)
    assert synced_at is not None
    # Not before its slot; at the first tick after it (or, when the simulated clock jumped past the
    # slot before the sweep's first run, at the slot one interval later: never a burst of catch-ups).
    assert slot <= synced_at < slot + timedelta(minutes=1) or (
        slot + timedelta(minutes=10) <= synced_at < slot + timedelta(minutes=11)
    )
    due = synced_at
    # The next tick consumes the sync's outbox events (no handler yet: processed at once).
    runner.run_pending(due + timedelta(seconds=2))
    with store.session() as session:
        unprocessed = session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
        )
    assert unprocessed == 0


def test_the_composition_names_its_jobs(tmp_path: Path) -> None:
    registry = build_registry(_settings(tmp_path, sync_interval_minutes=25))
    periodic = {p.name: p.every for p in registry.periodic}
    assert periodic[SYNC_ALL] == timedelta(minutes=1)  # the spread sweep (google2); each connection every 25 min
    assert periodic[PRUNE_FINISHED] == timedelta(days=1) and periodic[DELIVER_MAIL] == timedelta(seconds=30)
    assert PUSH_RENEW not in periodic
    assert SYNC_CONNECTION in registry.jobs
    short = build_registry(_settings(tmp_path, sync_interval_minutes=1, public_url="https://alliance.example.org"))
    assert {p.name: p.every for p in short.periodic}[PUSH_RENEW] == timedelta(minutes=1)


def _worker_registry(seen: threading.Event, good: list[str]) -> JobRegistry:
    registry = JobRegistry()

    def broken(store: Store, event: Event) -> None:
        raise RuntimeError("handler bug")

    def works(store: Store, event: Event) -> None:
        good.append(event.event_id)
        seen.set()

    registry.add_handler("broken", "*", broken)
    registry.add_handler("works", "occurrence.created", works)
    return registry


def _add_event(store: Store) -> str:
    with store.session() as session:
        event = OutboxEvent(kind="occurrence.created", therapist_id=1, connection_id=1, occurrence_id=1, payload={})
        session.add(event)
        session.flush()
        return event.event_id


def test_the_embedded_worker_runs_handlers_survives_their_errors_and_stops(store: Store, tmp_path: Path) -> None:
    seen = threading.Event()
    good: list[str] = []
    worker = EmbeddedWorker(store, _settings(tmp_path), registry=_worker_registry(seen, good), poll_interval=0.01)
    assert not worker.is_alive()
    worker.start()
    try:
        assert worker.is_alive()
        event_id = _add_event(store)
        assert seen.wait(timeout=60)
        seen.clear()
        second = _add_event(store)  # the loop goes on after the failing sibling handler
        assert seen.wait(timeout=60)
        assert worker.is_alive()
    finally:
        worker.stop(timeout=30)
    assert not worker.is_alive()
    assert good == [event_id, second]
    with store.session() as session:
        statuses = {(d.handler, d.status) for d in session.scalars(select(OutboxDelivery))}
    assert ("works", DONE) in statuses and ("broken", DONE) not in statuses


def test_is_alive_is_false_when_the_loop_thread_died(store: Store, tmp_path: Path) -> None:
    worker = EmbeddedWorker(store, _settings(tmp_path), registry=JobRegistry(), poll_interval=0.01)

    def die(now: datetime | None = None) -> int:
        raise SystemExit("the thread ends")  # not an Exception: the loop does not catch it

    worker.runner.run_pending = die  # type: ignore[method-assign]
    worker.start()
    worker._thread.join(timeout=60)  # type: ignore[union-attr]
    assert not worker.is_alive()
    worker.stop(timeout=1)


def test_is_alive_is_false_when_a_tick_hangs_past_the_heartbeat(store: Store, tmp_path: Path) -> None:
    now = {"t": 1000.0}
    entered, release = threading.Event(), threading.Event()
    registry = JobRegistry()

    def hang(store: Store) -> None:
        entered.set()
        assert release.wait(timeout=60)

    registry.add_periodic("hang", timedelta(minutes=1), hang)
    worker = EmbeddedWorker(
        store,
        _settings(tmp_path),
        registry=registry,
        poll_interval=0.01,
        stale_after=30,
        monotonic=lambda: now["t"],
    )
    worker.runner.policy = RetryPolicy(random=lambda: 0.0)
    worker.start()
    try:
        assert entered.wait(timeout=60)
        assert worker.is_alive()
        now["t"] += 31  # no heartbeat for longer than stale_after
        assert not worker.is_alive()
        release.set()
        deadline = 600
        while not worker.is_alive() and deadline:  # the next tick beats again
            threading.Event().wait(0.05)
            deadline -= 1
        assert worker.is_alive()
    finally:
        release.set()
        worker.stop(timeout=30)


def test_stop_wakes_a_sleeping_worker(store: Store, tmp_path: Path) -> None:
    worker = EmbeddedWorker(store, _settings(tmp_path), registry=JobRegistry(), poll_interval=3600)
    worker.start()
    worker.stop(timeout=30)  # would hang for an hour if the pause did not wake on stop
    assert not worker.is_alive() and not worker._thread.is_alive()  # type: ignore[union-attr]


# -- alliance jobs (a real process) -----------------------------------------------------------


def _handlers_of(kind: str, home: Path) -> int:
    """How many outbox handlers of the composed registry take ``kind``."""
    return len(build_registry(Settings(home=home, timezone="Europe/Madrid")).handlers_for(kind))


def _alliance(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": "Europe/Madrid", "COLUMNS": "200"})
    # These tests count periodic runs: the video jobs (issue 6) run on their own, rarely.
    env.update({"ALLIANCE_VIDEO_EVENTS_SECONDS": "3600", "ALLIANCE_VIDEO_SWEEP_SECONDS": "86400"})
    env.update({"ALLIANCE_MAIL_POLL_SECONDS": "3600", "ALLIANCE_CLIENT_MAIL_SWEEP_SECONDS": "86400"})
    result = subprocess.run(
        [sys.executable, "-m", "alliance", *args], capture_output=True, text=True, env=env, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"alliance {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result


def test_alliance_jobs_failed_lists_parked_work_and_retry_requeues_it(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert json.loads(_alliance(home, "jobs", "failed", "--json").stdout) == []
    store = Store(make_engine(f"sqlite:///{home / 'alliance.db'}"))
    try:
        event_id = _add_event(store)
        registry = JobRegistry()

        def fails(store: Store, event: Event) -> None:
            raise ValueError("Session with Jane Doe")  # a foreign message: never shown

        registry.add_handler("links.provision", "occurrence.created", fails)
        t0 = datetime.now(UTC)
        runner = InProcessRunner(store, registry, policy=RetryPolicy(max_attempts=2, random=lambda: 0.0))
        runner.run_pending(t0)
        runner.run_pending(t0 + timedelta(hours=1))

        listed = _alliance(home, "jobs", "failed", "--json")
        (item,) = json.loads(listed.stdout)
        assert item["type"] == "delivery" and item["name"] == "links.provision"
        assert item["event_id"] == event_id and item["event_kind"] == "occurrence.created"
        assert item["attempts"] == 2 and item["last_error"] == "ValueError"
        assert "Jane" not in listed.stdout
        human = _alliance(home, "jobs", "failed")
        assert item["id"] in human.stdout and "links.provision" in human.stdout

        assert _alliance(home, "jobs", "retry", check=False).returncode == 1
        assert "delivery:999" not in _alliance(home, "jobs", "retry", "delivery:999", check=False).stdout
        assert "re-queued 1" in _alliance(home, "jobs", "retry", item["id"]).stdout
        with store.session() as session:
            delivery = session.scalars(select(OutboxDelivery)).one()
            assert (delivery.status, delivery.attempts) == ("pending", 0)
        runner.run_pending(datetime.now(UTC) + timedelta(seconds=1))
        runner.run_pending(datetime.now(UTC) + timedelta(hours=2))
        assert len(json.loads(_alliance(home, "jobs", "failed", "--json").stdout)) == 1
        assert "re-queued 1" in _alliance(home, "jobs", "retry", "--all").stdout
        with store.session() as session:
            assert session.scalars(select(OutboxDelivery.status)).one() != PARKED
    finally:
        store.close()


def test_alliance_jobs_run_runs_one_tick_and_logs_json_lines(tmp_path: Path) -> None:
    home = tmp_path / "home"
    feed = tmp_path / "calendar.ics"
    feed.write_text(_ics(("a@test", _soon(2), "Session")))
    _alliance(home, "connect", "ics", str(feed))
    # The connect's first sync wrote one occurrence.created event: each handler subscribed to it
    # (the clients rules, the video lifecycle, the notes re-linking, ...) runs once.
    subscribed = _handlers_of("occurrence.created", home)
    assert json.loads(_alliance(home, "jobs", "run", "--json").stdout) == {"ran": subscribed}
    # A second tick finds nothing left to deliver: each delivery ran exactly once. (Periodic jobs
    # seen for the first time start at a random point of their interval, so the 1-minute sync
    # sweep may or may not fall due between the two ticks: only the deliveries are counted.)
    _alliance(home, "jobs", "run", "--json")
    store = Store(make_engine(f"sqlite:///{home / 'alliance.db'}"))
    try:
        with store.session() as session:
            runs = session.execute(select(OutboxDelivery.status, OutboxDelivery.attempts)).all()
        assert sorted(runs) == [(DONE, 1)] * subscribed
    finally:
        store.close()
    env_json = {"ALLIANCE_LOG_FORMAT": "json"}
    ran = subprocess.run(
        [sys.executable, "-m", "alliance", "-v", "jobs", "run"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": "Europe/Madrid", **env_json},
    )
    assert ran.returncode == 0, ran.stderr
    records = [json.loads(line) for line in ran.stderr.splitlines() if line.strip()]
    assert records and all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)


def test_alliance_jobs_prune_forgets_finished_work_and_keeps_the_rest(tmp_path: Path) -> None:
    home = tmp_path / "home"
    feed = tmp_path / "calendar.ics"
    feed.write_text(_ics(("a@test", _soon(2), "Session"), ("b@test", _soon(3), "Session")))
    _alliance(home, "connect", "ics", str(feed))
    _alliance(home, "jobs", "run")  # both occurrence.created events handled: done now
    # Retention counts from when work finished: nothing is old enough yet.
    kept = json.loads(_alliance(home, "jobs", "prune", "--json").stdout)
    assert kept == {"events": 0, "deliveries": 0, "jobs": 0}
    assert "0 event(s)" in _alliance(home, "jobs", "prune").stdout
    store = Store(make_engine(f"sqlite:///{home / 'alliance.db'}"))
    try:
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 2
        pruned = json.loads(_alliance(home, "jobs", "prune", "--older-than-days", "0", "--json").stdout)
        # One delivery per event and handler subscribed to occurrence.created.
        subscribed = _handlers_of("occurrence.created", home)
        assert pruned == {"events": 2, "deliveries": 2 * subscribed, "jobs": 0}
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
            assert session.scalar(select(func.count()).select_from(OutboxDelivery)) == 0
            assert session.scalar(select(func.count()).select_from(Occurrence)) == 2  # the mirror is untouched
    finally:
        store.close()
    assert _alliance(home, "jobs", "prune", "--older-than-days", "-1", check=False).returncode != 0
