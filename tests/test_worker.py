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

from alliance.jobs import DELIVER_MAIL, PRUNE_FINISHED, SYNC_ALL, build_registry
from alliance.settings import Settings
from alliance.worker import EmbeddedWorker
from core.jobs import DONE, PARKED, Event, InProcessRunner, JobRegistry, OutboxDelivery, RetryPolicy
from core.mirror import add_connection, ensure_therapist
from core.store import Occurrence, OutboxEvent, Store
from core.store.db import make_engine


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


def test_the_periodic_sync_syncs_every_connection_when_due_and_not_before(store: Store, tmp_path: Path) -> None:
    feed = tmp_path / "calendar.ics"
    feed.write_text(_ics(("a@test", _soon(2), "Session")))
    therapist = ensure_therapist(store, "therapist@localhost", timezone="Europe/Madrid")
    add_connection(store, therapist, "ics", "calendar", {"source": str(feed)})
    settings = _settings(tmp_path)
    t0 = datetime.now(UTC)
    clock = Clock(t0)
    # random 0.5: a periodic job seen for the first time runs half an interval later.
    runner = InProcessRunner(store, build_registry(settings), policy=RetryPolicy(random=lambda: 0.5), clock=clock)

    runner.run_pending()
    assert _occurrences(store) == 0
    runner.run_pending(t0 + timedelta(minutes=4, seconds=59))  # other periodic jobs (mail) may run
    assert _occurrences(store) == 0
    runner.run_pending(t0 + timedelta(minutes=5))
    assert _occurrences(store) == 1

    feed.write_text(_ics(("a@test", _soon(2), "Session"), ("b@test", _soon(3), "Supervision")))
    runner.run_pending(t0 + timedelta(minutes=14))
    assert _occurrences(store) == 1
    runner.run_pending(t0 + timedelta(minutes=15))
    assert _occurrences(store) == 2
    # The next tick consumes the sync's outbox events (no handler yet: processed at once).
    runner.run_pending(t0 + timedelta(minutes=15, seconds=2))
    with store.session() as session:
        unprocessed = session.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
        )
    assert unprocessed == 0


def test_the_composition_names_its_jobs(tmp_path: Path) -> None:
    registry = build_registry(_settings(tmp_path, sync_interval_minutes=25))
    assert [(p.name, p.every) for p in registry.periodic] == [
        (SYNC_ALL, timedelta(minutes=25)),
        (PRUNE_FINISHED, timedelta(days=1)),
        (DELIVER_MAIL, timedelta(seconds=30)),
    ]


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


def _alliance(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_TIMEZONE": "Europe/Madrid", "COLUMNS": "200"})
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
    # The connect's first sync wrote one occurrence.created event: the clients handler takes it.
    assert json.loads(_alliance(home, "jobs", "run", "--json").stdout) == {"ran": 1}
    # First sight of the periodic sync: it is due within one interval, not at once.
    assert json.loads(_alliance(home, "jobs", "run", "--json").stdout) == {"ran": 0}
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
        assert pruned == {"events": 2, "deliveries": 2, "jobs": 0}
        with store.session() as session:
            assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 0
            assert session.scalar(select(func.count()).select_from(OutboxDelivery)) == 0
            assert session.scalar(select(func.count()).select_from(Occurrence)) == 2  # the mirror is untouched
    finally:
        store.close()
    assert _alliance(home, "jobs", "prune", "--older-than-days", "-1", check=False).returncode != 0
