"""``alliance demo``: mirror the sample therapist calendar into a fresh home and show the result."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from alliance.cli.common import CliError, console, open_env
from alliance.providers import registry
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.mirror import add_connection, list_connections, list_occurrences
from core.sync import Status

DEMO_CALENDAR = Path(__file__).resolve().parent.parent / "demo" / "therapist.ics"
DEMO_ZONE = "Europe/Madrid"


def _fresh_home(home: Path | None) -> Path:
    if home is None and os.environ.get("ALLIANCE_HOME"):
        home = Path(os.environ["ALLIANCE_HOME"])
    if home is None:
        return Path(tempfile.mkdtemp(prefix="alliance-demo-"))
    if (home / "alliance.db").exists():
        raise CliError(f"{home} already holds an Alliance database; the demo needs a fresh ALLIANCE_HOME")
    home.mkdir(parents=True, exist_ok=True)
    return home


def register(app: typer.Typer) -> None:
    @app.command("demo")
    def demo(
        home: Path | None = typer.Option(None, "--home", help="Folder for the demo (default: a new temp folder)."),
    ) -> None:
        """Mirror a sample therapist calendar into a fresh ALLIANCE_HOME and show what happened."""
        target = _fresh_home(home)
        calendar = target / "therapist.ics"
        shutil.copyfile(DEMO_CALENDAR, calendar)
        # The demo always runs on the embedded default, whatever ALLIANCE_DATABASE_URL says.
        settings = Settings(home=target, database_url=None, timezone=DEMO_ZONE)
        env = open_env(settings)
        zone = ZoneInfo(DEMO_ZONE)
        console.print(f"[bold]Alliance demo[/bold] in {target}")
        console.print(f"1. copied the sample calendar to {calendar}")

        ics = registry().get("ics")
        connection_id = add_connection(
            env.store, env.therapist_id, "ics", "sample calendar", ics.normalize_settings({"source": str(calendar)})
        )
        connection = next(c for c in list_connections(env.store) if c.id == connection_id)
        first = sync_one(env.store, settings, connection)
        if first.report is None:
            raise CliError(f"the sample calendar did not sync: {first.error}")
        r = first.report
        console.print(
            f"2. first sync: {r.created} occurrences created, {r.cancelled} cancelled instance(s) recorded "
            f"(window: {settings.window_past_days} days back, {settings.window_future_days} ahead)"
        )

        now = datetime.now(UTC)
        week = list_occurrences(env.store, start=now, end=now + timedelta(days=7))
        table = Table(title=f"3. the next 7 days ({DEMO_ZONE})")
        for column in ("when", "title", "video"):
            table.add_column(column)
        for o in week:
            when = (
                o.start.date().isoformat() + " (all day)"
                if o.all_day
                else o.start.astimezone(zone).strftime("%a %d %b %H:%M")
            )
            table.add_row(when, o.title, o.video_url or "")
        console.print(table)

        everything = list_occurrences(env.store, include_cancelled=True)
        # A moved instance of a series starts somewhere other than its original slot (RECURRENCE-ID).
        moved = [o for o in everything if o.recurrence_id and not o.all_day and o.recurrence_id != o.start.isoformat()]
        cancelled = [o for o in everything if o.status is Status.CANCELLED]
        series: dict[str, list[datetime]] = defaultdict(list)
        for o in everything:
            if o.recurrence_id and not o.all_day and o.status is not Status.CANCELLED:
                series[o.uid].append(o.start)
        console.print(f"4. {len(series)} weekly series, {len(cancelled)} cancelled instance(s), {len(moved)} moved")
        for uid, starts in list(series.items())[:1]:
            local = sorted({s.astimezone(zone).strftime("%H:%M") for s in starts})
            utc = sorted({s.strftime("%H:%M") for s in starts})
            console.print(
                f"   series {uid}: local start time(s) {', '.join(local)} across daylight-saving changes "
                f"(UTC: {', '.join(utc)})",
                highlight=False,
            )
        links = sum(1 for o in everything if o.video_url)
        console.print(f"5. video links detected on {links} occurrence(s) (Meet, Zoom, Teams)")

        second = sync_one(env.store, settings, connection)
        if second.report is None:
            raise CliError(f"the second sync failed: {second.error}")
        console.print(f"6. re-sync with no change at the source: {second.report.changes} changes")
        console.print(
            f"\nTry it yourself:\n  ALLIANCE_HOME={target} alliance events --json\n"
            f"  (edit {calendar} and run ALLIANCE_HOME={target} alliance sync)",
            highlight=False,
        )
