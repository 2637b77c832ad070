"""``alliance jobs ...``: failed (parked) work, retrying it, running one tick by hand."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import typer
from rich.table import Table

from alliance.cli.common import CliError, console, open_env
from alliance.jobs import build_registry, retry_policy
from core.jobs import InProcessRunner, list_parked, retry_parked
from core.jobs.retention import prune_finished
from core.store import Store

jobs_app = typer.Typer(help="Background jobs: outbox handlers and periodic work.", no_args_is_help=True)


@jobs_app.command("failed")
def failed(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """List parked deliveries and jobs (failed on every attempt): ids, attempts, last error; no content."""
    env = open_env()
    items = list_parked(env.store)
    if as_json:
        console.print_json(json.dumps([i.as_dict() for i in items]))
        return
    if not items:
        console.print("no failed jobs")
        return
    table = Table("id", "handler / job", "event", "attempts", "last error", "parked at")
    for i in items:
        event = f"{i.event_kind} {i.event_id}" if i.event_id else ""
        parked = i.parked_at.isoformat(timespec="seconds")
        table.add_row(i.id, i.name, event, str(i.attempts), i.last_error or "", parked)
    console.print(table)


@jobs_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Queued, running, failed and stalled jobs per family (procrastinate on PostgreSQL, else the embedded queue)."""
    from alliance.queue.selection import PROCRASTINATE, QueueConfigError, queue_kind
    from alliance.queue.stats import embedded_counts, procrastinate_counts

    env = open_env()
    try:
        kind = queue_kind(env.settings)
    except QueueConfigError as exc:
        raise CliError(str(exc)) from None
    if kind == PROCRASTINATE:
        counts = procrastinate_counts(env.store, stale_seconds=env.settings.worker_stale_seconds)
    else:
        counts = embedded_counts(env.store, datetime.now(UTC))
    if as_json:
        console.print_json(json.dumps([c.as_dict() for c in counts]))
        return
    table = Table("family", "queued", "running", "failed", "stalled", title=f"jobs ({kind})")
    for c in counts:
        table.add_row(c.family, str(c.queued), str(c.running), str(c.failed), str(c.stalled))
    console.print(table)
    _print_periodic(env.store)


def _when(at: datetime | None) -> str:
    return at.isoformat(timespec="seconds") if at is not None else ""


def _print_periodic(store: Store) -> None:
    from alliance.queue.stats import periodic_rows

    table = Table("periodic job", "next run", "last started", "last finished", "last error", title="periodic jobs")
    for p in periodic_rows(store):
        table.add_row(
            p.name, _when(p.next_run_at), _when(p.last_started_at), _when(p.last_finished_at), p.last_error or ""
        )
    console.print(table)


@jobs_app.command("periodic")
def periodic(as_json: bool = typer.Option(False, "--json", help="Print a JSON array.")) -> None:
    """Periodic jobs: next run, when the last run started and finished, its error (either queue)."""
    from alliance.queue.stats import periodic_rows

    env = open_env()
    if as_json:
        console.print_json(json.dumps([p.as_dict() for p in periodic_rows(env.store)]))
        return
    _print_periodic(env.store)


@jobs_app.command("retry")
def retry(
    ids: list[str] = typer.Argument(None, help="Ids from 'alliance jobs failed' (delivery:N, job:N)."),
    all_: bool = typer.Option(False, "--all", help="Retry every parked item."),
) -> None:
    """Put parked items back in the queue with a fresh set of attempts."""
    if bool(ids) == all_:
        raise CliError("give the ids to retry or --all (not both)")
    env = open_env()
    try:
        count = retry_parked(env.store, None if all_ else list(ids), datetime.now(UTC))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if not all_ and count < len(ids):
        raise CliError(f"re-queued {count} of {len(ids)}: the others are not parked (see 'alliance jobs failed')")
    console.print(f"re-queued {count} item(s)")


@jobs_app.command("run")
def run(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Run one tick of the job runner now (what the worker inside 'alliance serve' does every few seconds)."""
    env = open_env()
    runner = InProcessRunner(env.store, build_registry(env.settings), policy=retry_policy(env.settings))
    ran = runner.run_pending()
    if as_json:
        console.print_json(json.dumps({"ran": ran}))
    else:
        console.print(f"ran {ran} job(s)")


@jobs_app.command("prune")
def prune(
    older_than_days: int = typer.Option(
        None,
        "--older-than-days",
        min=0,
        help="Keep finished work younger than this (default: ALLIANCE_JOB_RETENTION_DAYS).",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Delete finished outbox events, deliveries and jobs now (the worker does it daily); parked work stays."""
    env = open_env()
    days = env.settings.job_retention_days if older_than_days is None else older_than_days
    counts = prune_finished(env.store, timedelta(days=days))
    if as_json:
        console.print_json(json.dumps({"events": counts.events, "deliveries": counts.deliveries, "jobs": counts.jobs}))
    else:
        console.print(
            f"deleted {counts.events} event(s), {counts.deliveries} delivery(ies) and {counts.jobs} job(s)"
            f" finished more than {days} day(s) ago"
        )


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(jobs_app, name="jobs")
