"""A client's ratings view (series + flags, and its chart) against the floor, side by side in one run.

    python -m benchmarks.ratings_view [--weeks 104] [--rounds 9]

One client with a weekly session for ``weeks`` weeks (two years by default), 9 in 10 rated,
one in 12 a no-show. Measured, interleaved round by round:

- ``client_trend`` (what the page, the API and the CLI call) against the same rows read with bare
  SQLAlchemy Core (sessions joined to occurrences, clients and connections; ratings; call ends),
  without building records or evaluating any rule. Target: >= 0.5x the floor.
- ``ratings_chart_svg`` against a bare ``pygal.Line`` render of the same six series (no
  accessibility pass, no script removal). Target: >= 0.7x the floor.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pygal
from sqlalchemy import select

from core.alerts import Attendance
from core.client_trends import client_trend
from core.clients import Client, TherapySession, assign_series, create_client, get_client, list_sessions
from core.crypto import Keyring, MasterKeys, generate_key_text
from core.mirror import add_connection, ensure_therapist
from core.ratings import record_session_end, submit_rating
from core.ratings.models import Rating, SessionEnd
from core.store import Store
from core.store.models import Connection, Occurrence
from core.sync import OccurrenceKey, RemoteOccurrence, recurrence_id_for, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider
from portal.charts import ratings_chart_svg

NOW = datetime(2031, 1, 6, 12, 0, tzinfo=UTC)


def _seed(store: Store, weeks: int) -> tuple[int, str]:
    therapist = ensure_therapist(store, "bench@alliance.test")
    calendar = MemoryCalendar()
    connection = add_connection(store, therapist, "memory", "bench", {"calendar": "bench"})
    first = NOW - timedelta(weeks=weeks)
    for w in range(weeks):
        start = first + timedelta(weeks=w)
        key = OccurrenceKey("client@bench", recurrence_id_for(start))
        calendar.put(RemoteOccurrence(key=key, start=start, end=start + timedelta(minutes=50)))
    sync_connection(store, connection, MemoryProvider(calendar))
    code = create_client(store, therapist, modality="online").code
    assign_series(store, therapist, connection, "client@bench", code, from_start=first)
    client_id = get_client(store, therapist, code).id
    for i, s in enumerate(list_sessions(store, therapist, client_code=code)):
        if i % 12 == 5:
            record_session_end(store, s.id, ended_at=None, no_show=True)
        elif i % 10 != 3:
            v = str(7 + (i % 4) * 0.5 + (i % 7) * 0.1)[:3]
            submit_rating(store, s.id, client_id, {"bond": v, "goals": "9", "approach": v, "overall": "9.5"})
    return therapist, code


def _floor_rows(store: Store, therapist_id: int, code: str) -> int:
    """The same I/O as client_trend, no decisions: the rows it reads, as tuples."""
    with store.session() as session:
        client_id = session.scalar(select(Client.id).where(Client.therapist_id == therapist_id, Client.code == code))
        sessions = session.execute(
            select(TherapySession.id, Occurrence.start_utc, Occurrence.end_utc, Occurrence.status, Connection.name)
            .join(Occurrence, Occurrence.id == TherapySession.occurrence_id)
            .join(Client, Client.id == TherapySession.client_id)
            .join(Connection, Connection.id == Occurrence.connection_id)
            .where(Client.id == client_id)
            .order_by(Occurrence.start_utc)
        ).all()
        ratings = session.execute(
            select(Rating.session_id, Rating.bond, Rating.goals, Rating.approach, Rating.overall, Rating.total).where(
                Rating.client_id == client_id
            )
        ).all()
        ids = [s[0] for s in sessions]
        ends = session.execute(
            select(SessionEnd.session_id, SessionEnd.started_at, SessionEnd.ended_at, SessionEnd.no_show).where(
                SessionEnd.session_id.in_(ids)
            )
        ).all()
    return len(sessions) + len(ratings) + len(ends)


def _floor_chart(totals: list[float | None], items: list[list[float | None]], cutoff: float) -> str:
    chart = pygal.Line(range=(0, 40), secondary_range=(0, 10), allow_interruptions=True, width=800, height=420)
    chart.x_labels = [str(i + 1) for i in range(len(totals))]
    chart.add("Total", totals)
    chart.add("Cutoff", [cutoff] * len(totals))
    for values in items:
        chart.add("item", values, secondary=True)
    return str(chart.render(is_unicode=True))


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=104)
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (median reported)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(
            f"sqlite:///{Path(tmp) / 'bench.db'}", keyring=Keyring(MasterKeys.from_env_value(generate_key_text()))
        )
        therapist, code = _seed(store, args.weeks)
        trend = client_trend(store, therapist, code, now=NOW)
        attended = [r for r in trend.records if r.attendance is Attendance.ATTENDED]
        totals = [float(r.total) if r.total is not None else None for r in attended]
        items = [
            [float(r.scores.items[n]) if r.scores is not None else None for r in attended]
            for n in ("bond", "goals", "approach", "overall")
        ]
        cutoff = Decimal(36)
        floors, ours, chart_floors, charts = [], [], [], []
        for _ in range(args.rounds):  # interleaved so load changes hit both alike
            floors.append(_time(lambda: _floor_rows(store, therapist, code)))
            ours.append(_time(lambda: client_trend(store, therapist, code, now=NOW)))
            chart_floors.append(_time(lambda: _floor_chart(totals, items, float(cutoff))))
            charts.append(_time(lambda: ratings_chart_svg(trend.records, cutoff)))
        print(f"sessions {len(trend.rows)}, rated {len(totals) - totals.count(None)}, flags {len(trend.flags)}")
        print(f"{'measure':<20}  {'floor ms':>9}  {'ours ms':>8}  {'ratio':>6}  target")
        for name, f_list, o_list, target in (
            ("client_trend", floors, ours, 0.5),
            ("ratings_chart_svg", chart_floors, charts, 0.7),
        ):
            f, o = statistics.median(f_list), statistics.median(o_list)
            verdict = "pass" if f / o >= target else "MISS"
            print(f"{name:<20}  {f * 1000:>9.1f}  {o * 1000:>8.1f}  {f / o:>6.2f}  >= {target}x {verdict}")
        store.close()


if __name__ == "__main__":
    main()
