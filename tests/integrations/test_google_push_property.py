"""Property: random edits in Google Calendar, with pings dropped or duplicated on the way and API
faults (quota exceeded, expired sync tokens) hitting the syncs they trigger; the emulator delivers
every ping over real HTTP to Alliance's app under uvicorn, and the test runs the job worker's ticks.

- With no ping dropped and no fault, the pings alone keep the mirror equal to Google.
- Always, after the scheduled reconciliation sync (the real sweep, at the connection's slot),
  the mirror equals Google: a dropped ping or a failed sync is healed, nothing is duplicated.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, note, settings
from hypothesis import strategies as st
from sqlalchemy import select

from alliance.app import create_app
from alliance.jobs import build_registry
from alliance.push import maintain_channels
from alliance.reconcile import plan_reconciliation, sync_key
from alliance.syncing import sync_one
from core.jobs import InProcessRunner
from core.jobs.spread import next_slot
from core.mirror import add_connection, ensure_therapist, get_connection, list_occurrences
from core.store import Store
from core.store.db import make_engine
from core.store.models import Connection
from core.sync import Status
from sandbox.google import RunningEmulator
from tests.conftest import test_keyring
from tests.integrations.alliance_server import RunningApp, serve_alliance
from tests.integrations.google_world import EVENTS_PATH, MADRID, GoogleWorld

TODAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
INTERVAL_MINUTES = 30

_days = st.integers(1, 30)
_pick = st.integers(0, 1000)
_ops = st.one_of(
    st.tuples(st.just("add"), _days, st.integers(8, 19)),
    st.tuples(st.just("add_series"), _days, st.integers(2, 4)),
    st.tuples(st.just("move"), _pick, _days),
    st.tuples(st.just("retitle"), _pick),
    st.tuples(st.just("delete"), _pick),
    st.tuples(st.just("cancel_instance"), _pick),
    st.tuples(st.just("drop"), st.integers(1, 3)),
    st.tuples(st.just("duplicate"), st.integers(1, 3)),
    st.tuples(st.just("fault"), st.sampled_from(["quotaExceeded", "410"])),
    st.tuples(st.just("tick")),
    st.tuples(st.just("tick")),
)


def _local(day: int, hour: int) -> str:
    return (TODAY + timedelta(days=day)).strftime(f"%Y-%m-%dT{hour:02d}:00:00")


class PushModel:
    """A therapist editing in Google, a lossy push channel, and Alliance's worker ticking."""

    def __init__(self, world: GoogleWorld, store: Store, running: RunningApp) -> None:
        self.world = world
        self.state = world.state
        self.store = store
        self.settings = running.settings
        self.registry = build_registry(running.settings)
        # The worker ticks once the spacing of ping-started syncs (ALLIANCE_PUSH_SYNC_SPACING_MS) has passed.
        debounce = timedelta(milliseconds=running.settings.push_sync_spacing_ms)
        self.runner = InProcessRunner(store, self.registry, clock=lambda: datetime.now(UTC) + debounce)
        therapist = ensure_therapist(store, "p@example.org", timezone=MADRID)
        self.therapist = therapist
        self.conn = add_connection(store, therapist, "google", "g", world.settings())
        self.counter = 0
        self.disturbed = False  # a ping dropped or a sync faulted: only reconciliation must converge

    def start(self) -> None:
        view = get_connection(self.store, self.therapist, self.conn)
        assert view is not None and sync_one(self.store, self.settings, view).ok
        report = maintain_channels(self.store, self.settings, datetime.now(UTC), build_registry(self.settings))
        assert report.opened == [self.conn]

    def _live(self, *, series: bool | None = None) -> list[dict[str, Any]]:
        events = [
            e
            for e in self.state.raw_events("primary")
            if e.get("status") != "cancelled" and "recurringEventId" not in e
        ]
        if series is not None:
            events = [e for e in events if bool(e.get("recurrence")) is series]
        return sorted(events, key=lambda e: e["id"])

    def apply(self, op: tuple[Any, ...]) -> None:
        kind = op[0]
        self.counter += 1
        if kind == "add":
            body = {
                "summary": f"S{self.counter}",
                "start": {"dateTime": _local(op[1], op[2]), "timeZone": MADRID},
                "end": {"dateTime": _local(op[1], op[2] + 1), "timeZone": MADRID},
            }
            self.state.seed_event("primary", body)
        elif kind == "add_series":
            self.state.seed_event(
                "primary",
                {
                    "summary": f"W{self.counter}",
                    "recurrence": [f"RRULE:FREQ=WEEKLY;COUNT={op[2]}"],
                    "start": {"dateTime": _local(op[1], 18), "timeZone": MADRID},
                    "end": {"dateTime": _local(op[1], 19), "timeZone": MADRID},
                },
            )
        elif kind in ("move", "retitle", "delete"):
            live = self._live()
            # Never delete the last event: a complete listing (after a 410) that suddenly shows
            # nothing is refused by the engine's empty-source guard, by design.
            if not live or (kind == "delete" and len(live) < 2):
                return
            target = live[op[1] % len(live)]
            if kind == "move":
                self.state.move_event("primary", target["id"], {"dateTime": _local(op[2], 9), "timeZone": MADRID})
            elif kind == "retitle":
                self.state.retitle_event("primary", target["id"], f"R{self.counter}")
            else:
                self.state.cancel_event("primary", target["id"])
        elif kind == "cancel_instance":
            masters = self._live(series=True)
            if not masters:
                return
            master = masters[op[1] % len(masters)]
            instances = self.state.list_instances("primary", master["id"], [])["items"]
            if instances:
                self.state.cancel_event("primary", instances[op[1] % len(instances)]["id"])
        elif kind == "drop":
            self.state.inject_push_faults(drop=op[1])
            self.disturbed = True
            event("pings dropped")
        elif kind == "duplicate":
            self.state.inject_push_faults(duplicate=op[1])
            event("pings duplicated")
        elif kind == "fault":
            self.disturbed = True
            if op[1] == "410":
                self.state.expire_sync_tokens()
                event("sync token expired")
            else:
                self.state.inject_fault("quotaExceeded", path=EVENTS_PATH, count=1)
                event("a sync hit quotaExceeded")
        else:
            self.tick()

    def tick(self) -> None:
        assert self.state.push.wait_idle(30)
        for _ in range(10):
            if self.runner.run_pending() == 0:
                return

    def reconcile(self) -> None:
        """The scheduled reconciliation: the real sweep at this connection's next slot."""
        self.state.clear_faults()
        with self.store.session() as session:
            last = session.scalar(select(Connection.last_sync_at).where(Connection.id == self.conn))
        assert last is not None
        slot = next_slot(sync_key(self.conn), last, timedelta(minutes=INTERVAL_MINUTES))
        clock = {"now": slot}
        registry = build_registry(self.settings, clock=lambda: clock["now"])  # the jobs' "now" too
        assert plan_reconciliation(self.store, self.settings, registry, slot) == 1
        runner = InProcessRunner(self.store, registry, clock=lambda: clock["now"])
        runner.run_pending()
        # A sync that hit quotaExceeded backs off (core.sync.backoff): a reconciliation falling due
        # inside the backoff runs when it ends, not before.
        with self.store.session() as session:
            until = session.scalar(select(Connection.backoff_until).where(Connection.id == self.conn))
        if until is not None and until > slot:
            clock["now"] = until
            runner.run_pending()

    def expected(self) -> dict[tuple[str, str], tuple[datetime, datetime, str]]:
        """What Google lists, computed without the provider's mapping."""
        listing = self.state.list_events(
            "primary", [("singleEvents", "true"), ("maxResults", "2500"), ("timeMin", TODAY.isoformat())]
        )
        out = {}
        for item in listing["items"]:
            original = item.get("originalStartTime")
            rid = datetime.fromisoformat(original["dateTime"]).astimezone(UTC).isoformat() if original else ""
            start = datetime.fromisoformat(item["start"]["dateTime"]).astimezone(UTC)
            end = datetime.fromisoformat(item["end"]["dateTime"]).astimezone(UTC)
            out[(item["iCalUID"], rid)] = (start, end, item["summary"])
        return out

    def mirror(self) -> dict[tuple[str, str], tuple[datetime, datetime, str]]:
        live = [o for o in list_occurrences(self.store) if o.status is not Status.CANCELLED]
        ids = [o.provider_id for o in live]
        assert len(ids) == len(set(ids)), "one Google event mirrored twice"
        return {(o.uid, o.recurrence_id): (o.start, o.end, o.title) for o in live}


@pytest.fixture(scope="module")
def open_store(sqlite_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[[], tuple[Store, Path]]:
    directory = tmp_path_factory.mktemp("google-push-property")

    def _open() -> tuple[Store, Path]:
        name = uuid.uuid4().hex
        path = directory / f"{name}.db"
        shutil.copy(sqlite_template, path)
        return Store(make_engine(f"sqlite:///{path}"), keyring=test_keyring()), directory / name

    return _open


@pytest.fixture(scope="module")
def world(google_emulator: RunningEmulator) -> GoogleWorld:
    return GoogleWorld(google_emulator)


@settings(max_examples=int(os.environ.get("GOOGLE_PUSH_PROPERTY_EXAMPLES", "0")) or settings.default.max_examples)
@given(ops=st.lists(_ops, min_size=3, max_size=14))
def test_pings_keep_the_mirror_current_and_reconciliation_heals_what_they_miss(
    world: GoogleWorld, open_store: Callable[[], tuple[Store, Path]], ops: list[tuple[Any, ...]]
) -> None:
    note(f"ops={ops!r}")
    world.reset(seed=0)
    store, home = open_store()
    try:
        with serve_alliance(
            world.emu,
            home,
            lambda s: create_app(s, store=store),
            sync_interval_minutes=INTERVAL_MINUTES,
        ) as running:
            model = PushModel(world, store, running)
            model.start()
            for op in ops:
                model.apply(op)
            model.tick()
            expected = model.expected()
            if not model.disturbed:
                assert model.mirror() == expected, "the pings alone should have kept the mirror current"
            model.reconcile()
            assert model.mirror() == expected
    finally:
        store.close()
