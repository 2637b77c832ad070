"""``alliance cancellation SESSION --by client|therapist [--late]``: who cancelled (alert rule R8)."""

from __future__ import annotations

import json

import typer

from alliance.cli.common import CliError, console, open_env
from core.attendance import NotCancelled, record_cancellation
from core.clients import UnknownSession


def cancellation(
    session_id: int = typer.Argument(..., help="The session id ('alliance sessions --json')."),
    by: str = typer.Option(..., "--by", help="Who cancelled: client or therapist."),
    late: bool = typer.Option(False, "--late", help="The client cancelled at short notice."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Record who cancelled a cancelled session (a calendar does not say; alert rule R8 needs it)."""
    env = open_env()
    try:
        view = record_cancellation(env.store, env.therapist_id, session_id, by, late=late)
    except (UnknownSession, NotCancelled, ValueError) as exc:
        raise CliError(str(exc)) from None
    if as_json:
        console.print_json(
            json.dumps({"session_id": session_id, "cancelled_by": view.cancelled_by.value, "late": view.late})
        )
    else:
        late_text = " (late)" if view.late else ""
        console.print(f"session {session_id}: cancelled by the {view.cancelled_by.value}{late_text}", highlight=False)


def register(app: typer.Typer) -> None:
    app.command("cancellation")(cancellation)
