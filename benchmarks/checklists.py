"""Open checklist flags over a busy practice, against the bare queries, side by side in one run.

    python -m benchmarks.checklists [--clients 30] [--weeks 52] [--rounds 7]

One therapist with ``clients`` online clients, each with a weekly series of ``weeks`` sessions;
a third of the sessions have their start list answered (S2 done), a few skipped. Measured:

- ``open_flags``: every open flag of the therapist (``GET /api/v1/checklists/flags``);
- floor: the same rows read with bare SQLAlchemy Core (sessions joined to occurrences and
  clients, runs, answer statuses, templates), without deciding anything.

Target: >= 0.5x the floor (the decisions are Python per session and item).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from core.checklists import AnswerInput, open_flags, record_answers
from core.checklists.models import ChecklistAnswer, ChecklistRun, ChecklistTemplate
from core.clients import Client, TherapySession, assign_series, create_client, list_sessions
from core.crypto import Keyring, MasterKeys, generate_key_text
from core.mirror import add_connection, ensure_therapist
from core.store import Store
from core.store.models import Connection, Occurrence
from core.sync import OccurrenceKey, RemoteOccurrence, recurrence_id_for, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider

FIRST = datetime(2030, 1, 7, 8, 0, tzinfo=UTC)


def _seed(store: Store, clients: int, weeks: int) -> int:
    therapist = ensure_therapist(store, "bench@alliance.test")
    calendar = MemoryCalendar()
    connection = add_connection(store, therapist, "memory", "bench", {"calendar": "bench"})
    for c in range(clients):
        uid = f"client-{c}@bench"
        for w in range(weeks):
            start = FIRST + timedelta(weeks=w, hours=c % 10, days=c // 10)
            key = OccurrenceKey(uid, recurrence_id_for(start))
            calendar.put(RemoteOccurrence(key=key, start=start, end=start + timedelta(minutes=50)))
    sync_connection(store, connection, MemoryProvider(calendar))
    for c in range(clients):
        code = create_client(store, therapist, modality="online").code
        assign_series(store, therapist, connection, f"client-{c}@bench", code, from_start=FIRST)
    for i, s in enumerate(list_sessions(store, therapist)):
        if i % 3 == 0:
            record_answers(store, therapist, s.id, "start", [AnswerInput("S2", "done", text="Home; +34 600 000 000")])
        elif i % 7 == 0:
            record_answers(store, therapist, s.id, "start", [AnswerInput("S2", "skipped", reason="later")])
    return therapist


def _floor(store: Store, therapist_id: int) -> int:
    """The same I/O as open_flags, no decisions: the rows it reads, as tuples."""
    with store.session() as session:
        sessions = session.execute(
            select(TherapySession.id, TherapySession.client_id, TherapySession.modality, Occurrence.start_utc)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Client, Client.id == TherapySession.client_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Client.therapist_id == therapist_id, Occurrence.status != "cancelled")
            .order_by(Occurrence.start_utc)
        ).all()
        ids = [s[0] for s in sessions]
        runs = []
        answers = []
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            found = session.execute(
                select(ChecklistRun.id, ChecklistRun.session_id, ChecklistRun.phase, ChecklistRun.template_id).where(
                    ChecklistRun.session_id.in_(chunk)
                )
            ).all()
            runs += found
        run_ids = [r[0] for r in runs]
        for i in range(0, len(run_ids), 500):
            answers += session.execute(
                select(ChecklistAnswer.run_id, ChecklistAnswer.item_key, ChecklistAnswer.status).where(
                    ChecklistAnswer.run_id.in_(run_ids[i : i + 500])
                )
            ).all()
        templates = session.execute(
            select(ChecklistTemplate.id, ChecklistTemplate.items).where(ChecklistTemplate.therapist_id == therapist_id)
        ).all()
    return len(sessions) + len(runs) + len(answers) + len(templates)


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(
            f"sqlite:///{Path(tmp) / 'bench.db'}", keyring=Keyring(MasterKeys.from_env_value(generate_key_text()))
        )
        therapist = _seed(store, args.clients, args.weeks)
        flagged = sum(len(f) for f in open_flags(store, therapist).values())
        floors, ours = [], []
        for _ in range(args.rounds):  # interleaved so load changes hit both alike
            floors.append(_time(lambda: _floor(store, therapist)))
            ours.append(_time(lambda: open_flags(store, therapist)))
        f, o = statistics.median(floors), statistics.median(ours)
        sessions = args.clients * args.weeks
        verdict = "pass" if f / o >= 0.5 else "MISS"
        print(f"{'sessions':>8}  {'flags':>6}  {'floor ms':>9}  {'open_flags ms':>13}  {'ratio':>6}  target")
        print(f"{sessions:>8}  {flagged:>6}  {f * 1000:>9.1f}  {o * 1000:>13.1f}  {f / o:>6.2f}  >= 0.5x {verdict}")
        store.close()


if __name__ == "__main__":
    main()
