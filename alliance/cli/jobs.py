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
