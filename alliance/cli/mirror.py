"""Mirror commands: connect, connections, sync, events."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from alliance import gc_tuning
from alliance.cli import google as google_commands
from alliance.cli import outlook as outlook_commands
from alliance.cli.common import CliError, console, err_console, open_env, parse_instant
from alliance.providers import registry
from alliance.sync_health import connection_health
from alliance.syncing import SyncOutcome, sync_all, sync_one
from core.mirror import (
    ConnectionView,
    OccurrenceView,
    add_connection,
    list_connections,
    list_occurrences,
    occurrence_record,
    remove_unsynced_connection,
)
from core.push.pause import current_pauses

connect_app = typer.Typer(help="Add a calendar connection for the default therapist.", no_args_is_help=True)

REPORT_FIELDS = ("created", "updated", "rescheduled", "restored", "cancelled", "unchanged")


def _default_ics_name(source: str) -> str:
    parts = urlsplit(source)
    if parts.scheme in ("http", "https", "webcal"):
        return parts.hostname or "ics feed"  # never the path or query: secret feed URLs live there
    return source.rstrip("/").rsplit("/", 1)[-1].removesuffix(".ics") or "ics file"


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[ConnectionView], Callable[[int, int | None], None] | None]]:
    """A rich progress bar per connection on stderr, shown only on a terminal."""
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        transient=True,
        disable=not (enabled and err_console.is_terminal),
    )

    def factory(connection: ConnectionView) -> Callable[[int, int | None], None]:
        task = progress.add_task(f"syncing {connection.name}", total=None)

        def update(done: int, total: int | None) -> None:
            progress.update(task, completed=done, total=total)

        return update

    with progress:
        yield factory


def _print_outcomes(outcomes: list[SyncOutcome], as_json: bool) -> None:
    if as_json:
        rows: list[dict[str, Any]] = []
        for o in outcomes:
            row: dict[str, Any] = {"connection": o.connection.name, "id": o.connection.id, "ok": o.ok}
            if o.report:
                row.update({f: getattr(o.report, f) for f in REPORT_FIELDS})
                row["full_resync"] = o.report.full_resync
            else:
                row["error"] = o.error
            rows.append(row)
        console.print_json(json.dumps(rows))
        return
    for o in outcomes:
        if o.report:
            counts = ", ".join(f"{getattr(o.report, f)} {f}" for f in REPORT_FIELDS)
            console.print(f"{o.connection.name}: {counts}", highlight=False, markup=False)
        else:
            err_console.print(f"error: {o.connection.name}: {o.error}", highlight=False, markup=False)


@connect_app.command("ics")
def connect_ics(
    source: str = typer.Argument(..., help="Path to an .ics file, or an http(s):// or webcal:// feed URL."),
    name: str | None = typer.Option(None, "--name", help="A name for this calendar (default: file or host name)."),
) -> None:
    """Connect an ICS file or feed and run its first sync."""
    env = open_env()
    provider = registry().get("ics")
    settings = provider.normalize_settings({"source": source})
    name = name or _default_ics_name(settings["source"])
    try:
        connection_id = add_connection(env.store, env.therapist_id, "ics", name, settings)
    except ValueError as exc:
        raise CliError(f"{exc}; choose another with --name") from None
    connection = next(c for c in list_connections(env.store, env.therapist_id) if c.id == connection_id)
    with _progress(True) as factory:
        outcome = sync_one(env.store, env.settings, connection, progress=factory(connection))
    if not outcome.ok:
        # A feed that never synced is not worth keeping: the user fixes the source and retries.
        remove_unsynced_connection(env.store, connection_id)
        raise CliError(f"could not read {name!r}, nothing was added: {outcome.error}")
    console.print(f"connected {name!r} (id {connection_id})", highlight=False, markup=False)
    _print_outcomes([outcome], as_json=False)


def register(app: typer.Typer) -> None:
    google_commands.register(connect_app)
    outlook_commands.register(connect_app)
    app.add_typer(connect_app, name="connect")

    @app.command("connections")
    def connections(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
        """List connections with their health and last sync."""
        env = open_env()
        views = list_connections(env.store, env.therapist_id)
        now = datetime.now(UTC)
        if as_json:
            # health: backoff, next sync, push expiry and pause (alliance.sync_health)
            rows = [{**_connection_json(c), **connection_health(env.store, env.settings, c, now)} for c in views]
            console.print_json(json.dumps(rows))
            return
        table = Table("id", "name", "provider", "health", "last sync", "occurrences")
        pauses = current_pauses(env.store, now)
        for c in views:
            health = c.health if not c.last_error else f"{c.health}: {c.last_error}"
            if (pause := pauses.get(c.id)) is not None:
                # Logged by the renewal job, but the operator reads this table: say it here too.
                until = pause.until.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
                health += f"; push paused until {until} ({pause.reason})"
            last = c.last_sync_at.isoformat(timespec="seconds") if c.last_sync_at else "never"
            table.add_row(str(c.id), c.name, c.provider, health, last, str(c.occurrences))
        console.print(table)

    @app.command("sync")
    def sync(
        as_json: bool = typer.Option(False, "--json", help="Print JSON."),
        connection: str | None = typer.Option(None, "--connection", help="Only this connection (name or id)."),
        allow_empty: bool = typer.Option(
            False, "--allow-empty", help="Accept a source that suddenly lists no events (cancels the mirror)."
        ),
    ) -> None:
        """Sync every connection and print what changed."""
        env = open_env()
        gc_tuning.tune_for_long_running_process()  # a first mirror writes tens of thousands of rows
        try:
            with _progress(not as_json) as factory:
                outcomes = sync_all(
                    env.store,
                    env.settings,
                    env.therapist_id,
                    only=connection,
                    force_empty=allow_empty,
                    progress_factory=factory,
                )
        except LookupError as exc:
            raise CliError(str(exc)) from None
        if not outcomes:
            err_console.print("no connections yet: add one with 'alliance connect ics PATH_OR_URL'")
        _print_outcomes(outcomes, as_json)
        if not all(o.ok for o in outcomes):
            raise typer.Exit(1)

    @app.command("events")
    def events(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
        start: str | None = typer.Option(None, "--from", help="ISO date or date-time (default: today)."),
        end: str | None = typer.Option(None, "--to", help="ISO date or date-time (default: 30 days after --from)."),
        include_cancelled: bool = typer.Option(False, "--include-cancelled", help="Also list cancelled ones."),
    ) -> None:
        """List mirrored occurrences in a window."""
        env = open_env()
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        window_start = parse_instant(start, "--from") if start else today
        window_end = parse_instant(end, "--to") if end else window_start + timedelta(days=30)
        if window_end <= window_start:
            raise CliError("--to must be after --from")
        views = list_occurrences(
            env.store,
            therapist_id=env.therapist_id,
            start=window_start,
            end=window_end,
            include_cancelled=include_cancelled,
        )
        if as_json:
            console.print_json(json.dumps([occurrence_json(o) for o in views]))
            return
        table = Table("start", "end", "status", "title", "video", "connection")
        for o in views:
            row = occurrence_json(o)
            table.add_row(row["start"], row["end"], row["status"], o.title, o.video_url or "", o.connection)
        console.print(table)


def _connection_json(c: ConnectionView) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "provider": c.provider,
        "health": c.health,
        "last_error": c.last_error,
        "last_sync_at": c.last_sync_at.isoformat() if c.last_sync_at else None,
        "last_success_at": c.last_success_at.isoformat() if c.last_success_at else None,
        "last_result": c.last_result,
        "occurrences": c.occurrences,
    }


def occurrence_json(o: OccurrenceView) -> dict[str, Any]:
    """The JSON shape of one occurrence: UTC instants, or dates (end exclusive) when all-day."""
    return occurrence_record(o)
