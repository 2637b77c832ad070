"""Client and session commands: ``clients add/list/archive``, ``assign``, ``sessions``.

Names and e-mail addresses are printed only with ``--show-names``: a terminal, a scroll-back
buffer or a shared screen is exactly where a pseudonymous code should be enough.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import typer
from rich.table import Table

from alliance.cli.actor import cli_actor
from alliance.cli.common import CliError, console, open_env, parse_instant
from core.attendance import CancellationView, who_cancelled
from core.clients import (
    AmbiguousEvent,
    ClientsError,
    ClientView,
    SessionView,
    assign_event,
    create_client,
    list_clients,
    list_sessions,
    update_client,
)
from core.clients import archive_client as archive_client_service
from core.links import link_url, live_tokens
from core.mirror import instant_text
from core.sync import Status
from core.video.views import video_links, video_record

clients_app = typer.Typer(help="Pseudonymous clients of the default therapist.", no_args_is_help=True)


def _occurrence_instant(value: str) -> datetime | date:
    """``--occurrence``: a date (all-day occurrence) or a date-time; naive date-times are UTC."""
    text = value.strip()
    if len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    return parse_instant(text, "--occurrence")


def session_json(s: SessionView, show_names: bool = False) -> dict[str, Any]:
    """The JSON shape of one session (times like ``alliance events``)."""
    row: dict[str, Any] = {
        "id": s.id,
        "occurrence_id": s.occurrence_id,
        "uid": s.uid,
        "recurrence_id": s.recurrence_id or None,
        "start": instant_text(s.start, s.all_day),
        "end": instant_text(s.end, s.all_day),
        "all_day": s.all_day,
        "status": s.status.value,
        "client": s.client_code,
        "modality": s.modality.value,
        "source": s.source.value,
        "connection": s.connection,
    }
    if show_names:
        row["client_name"] = s.client.name if s.client else None
        row["client_email"] = s.client.email if s.client else None
    return row


def _cancellation_json(view: CancellationView | None) -> dict[str, Any]:
    """Who cancelled (null: not cancelled, or not recorded yet) and whether at short notice."""
    return {
        "cancelled_by": view.cancelled_by.value if view else None,
        "cancelled_late": view.late if view else None,
    }


def _cancelled_cell(cancelled: bool, view: CancellationView | None) -> str:
    if view is not None:
        return f"{view.cancelled_by.value}{' (late)' if view.late else ''}"
    return "not recorded" if cancelled else ""


def client_json(c: ClientView, show_names: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": c.id,
        "code": c.code,
        "archived": c.archived_at is not None,
        "created_at": c.created_at.isoformat(),
    }
    if show_names:
        d = c.details
        row.update(
            name=d.name if d else None,
            email=d.email if d else None,
            phone=d.phone if d else None,
            timezone=d.timezone if d else None,
            modality=d.modality.value if d and d.modality else None,
            language=d.language if d else None,
            erased=c.erased,
        )
    return row


@clients_app.command("add")
def add(
    name: str | None = typer.Option(None, "--name", help="Display name (stored encrypted)."),
    email: str | None = typer.Option(None, "--email", help="E-mail; events with it as an attendee become sessions."),
    phone: str | None = typer.Option(None, "--phone", help="Phone number (stored encrypted)."),
    timezone: str | None = typer.Option(None, "--timezone", help="The client's IANA time zone, e.g. Europe/Berlin."),
    modality: str | None = typer.Option(None, "--modality", help="Preferred modality: online or in_person."),
    language: str | None = typer.Option(
        None, "--language", help="The client's language for e-mails and their page: en or es (else the practice's)."
    ),
    code: str | None = typer.Option(
        None, "--code", help="Use this code instead of a random one (never initials: they re-identify people)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print {id, code} as JSON."),
) -> None:
    """Add a client and print its pseudonymous code."""
    env = open_env()
    try:
        client = create_client(
            env.store,
            env.therapist_id,
            name=name,
            email=email,
            phone=phone,
            timezone=timezone,
            modality=modality,
            language=language,
            code=code,
            actor=cli_actor(env.therapist_id),
        )
    except ClientsError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        console.print_json(json.dumps({"id": client.id, "code": client.code}))
    else:
        console.print(client.code, highlight=False, markup=False)


@clients_app.command("list")
def list_(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
    show_names: bool = typer.Option(False, "--show-names", help="Also print names and contact details."),
    archived: bool = typer.Option(False, "--archived", help="Include archived clients."),
) -> None:
    """List clients by code."""
    env = open_env()
    views = list_clients(
        env.store, env.therapist_id, include_archived=archived, reveal=show_names, actor=cli_actor(env.therapist_id)
    )
    if as_json:
        console.print_json(json.dumps([client_json(c, show_names) for c in views]))
        return
    columns = ["code", "archived"] + (["name", "email", "phone", "timezone", "modality"] if show_names else [])
    table = Table(*columns)
    for c in views:
        row = client_json(c, show_names)
        cells = [c.code, "yes" if row["archived"] else ""]
        if show_names:
            cells += [row[k] or "" for k in ("name", "email", "phone", "timezone", "modality")]
        table.add_row(*cells)
    console.print(table)


@clients_app.command("language")
def language_(
    code: str = typer.Argument(..., help="The client's code."),
    language: str | None = typer.Argument(None, help="en or es; leave out with --clear."),
    clear: bool = typer.Option(False, "--clear", help="Use the practice's default language again."),
) -> None:
    """Set the language of a client's e-mails and the default of their page (en or es)."""
    if (language is None) == (not clear):
        raise CliError("give a language (en or es), or --clear")
    env = open_env()
    try:
        update_client(
            env.store, env.therapist_id, code, language=None if clear else language, actor=cli_actor(env.therapist_id)
        )
    except ClientsError as exc:
        raise CliError(str(exc)) from None
    console.print(f"{code.upper()}: {'the practice default' if clear else language}", highlight=False, markup=False)


@clients_app.command("archive")
def archive(
    code: str = typer.Argument(..., help="The client's code."),
    restore: bool = typer.Option(False, "--restore", help="Un-archive instead."),
) -> None:
    """Archive a client: no new sessions are assigned to it by series or rules."""
    env = open_env()
    try:
        client = archive_client_service(
            env.store, env.therapist_id, code, archived=not restore, actor=cli_actor(env.therapist_id)
        )
    except ClientsError as exc:
        raise CliError(str(exc)) from None
    console.print(f"{client.code} {'restored' if restore else 'archived'}", highlight=False, markup=False)


def register(app: typer.Typer) -> None:
    """Add this module's commands to ``app``."""
    app.add_typer(clients_app, name="clients")

    @app.command("assign")
    def assign(
        uid: str = typer.Argument(..., help="The event's UID (uid in 'alliance events --json')."),
        client: str = typer.Option(..., "--client", help="The client's code."),
        occurrence: str | None = typer.Option(
            None,
            "--occurrence",
            help="Only the occurrence with this original start (recurrence_id) or start; default: the whole series.",
        ),
        connection: str | None = typer.Option(None, "--connection", help="The connection (name or id) of the UID."),
        since: str | None = typer.Option(
            None, "--from", help="Series: assign occurrences starting at or after this instant (default: now)."
        ),
        modality: str | None = typer.Option(None, "--modality", help="One occurrence: online or in_person."),
        as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    ) -> None:
        """Assign an event to a client: its whole series from now on, or one --occurrence."""
        env = open_env()
        if occurrence is None and modality is not None:
            raise CliError("--modality applies to one --occurrence; a series takes the client's default")
        if occurrence is not None and since is not None:
            raise CliError("--from applies to a series; drop it or --occurrence")
        try:
            result = assign_event(
                env.store,
                env.therapist_id,
                uid,
                client,
                occurrence=_occurrence_instant(occurrence) if occurrence is not None else None,
                connection=connection,
                from_start=parse_instant(since, "--from") if since is not None else None,
                modality=modality,
            )
        except AmbiguousEvent as exc:
            raise CliError(f"{exc} with --connection NAME") from None
        except ClientsError as exc:
            raise CliError(str(exc)) from None
        if result.session is not None:
            s = result.session
            if as_json:
                console.print_json(json.dumps({"session": session_json(s)}))
            else:
                console.print(
                    f"session {s.id}: {instant_text(s.start, s.all_day)} "
                    f"assigned to {s.client_code} ({s.modality.value})",
                    highlight=False,
                    markup=False,
                    soft_wrap=True,
                )
            return
        series = result.series
        if series is None:  # pragma: no cover - assign_event returns one or the other
            raise CliError("nothing was assigned")
        if as_json:
            console.print_json(
                json.dumps(
                    {
                        "series": {
                            "id": series.id,
                            "uid": series.uid,
                            "client": series.client_code,
                            "from": series.from_start.isoformat(),
                            "sessions_assigned": series.sessions_assigned,
                        }
                    }
                )
            )
        else:
            console.print(
                f"series {series.uid} assigned to {series.client_code} from {series.from_start.isoformat()}: "
                f"{series.sessions_assigned} session(s) now, later ones as they sync",
                highlight=False,
                markup=False,
                soft_wrap=True,
            )

    @app.command("sessions")
    def sessions(
        as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
        start: str | None = typer.Option(None, "--from", help="ISO date or date-time (default: no lower bound)."),
        end: str | None = typer.Option(None, "--to", help="ISO date or date-time (default: no upper bound)."),
        client: str | None = typer.Option(None, "--client", help="Only this client's sessions (code)."),
        show_names: bool = typer.Option(False, "--show-names", help="Also print client names and e-mails."),
    ) -> None:
        """List sessions (cancelled ones too, with their status)."""
        env = open_env()
        window_start = parse_instant(start, "--from") if start else None
        window_end = parse_instant(end, "--to") if end else None
        if window_start and window_end and window_end <= window_start:
            raise CliError("--to must be after --from")
        try:
            views = list_sessions(
                env.store,
                env.therapist_id,
                start=window_start,
                end=window_end,
                client_code=client,
                reveal=show_names,
                actor=cli_actor(env.therapist_id),
            )
        except ClientsError as exc:
            raise CliError(str(exc)) from None
        videos = video_links(env.store, env.therapist_id, [s.id for s in views])
        cancelled = who_cancelled(env.store, views)  # the therapist's record (R8); calendars never say
        if as_json:
            # client_url: the client's link (issue 7), or null before one was issued (or after a revocation).
            tokens = live_tokens(env.store, env.therapist_id, [s.id for s in views])
            rows = [
                {
                    **session_json(s, show_names),
                    "client_url": link_url(env.settings.base_url, tokens[s.id]) if s.id in tokens else None,
                    "video": video_record(videos.get(s.id)),
                    **_cancellation_json(cancelled.get(s.id)),
                }
                for s in views
            ]
            console.print_json(json.dumps(rows))
            return
        columns = ["start", "end", "status", "client", "modality", "source", "uid"]
        table = Table(*(columns + ["cancelled by", "video"] + (["name"] if show_names else [])))
        for s in views:
            row = session_json(s, show_names)
            cells = [row[c] for c in columns]
            cells.append(_cancelled_cell(s.status is Status.CANCELLED, cancelled.get(s.id)))
            cells.append(video_record(videos.get(s.id))["link_status"])
            if show_names:
                cells.append(row["client_name"] or "")
            table.add_row(*cells)
        console.print(table)
