"""``alliance notes add/show`` and ``alliance audit verify``: session notes from the terminal.

Notes are written and read as the default therapist; every command is audited with the origin
``cli <user>``. Errors never echo a note's text.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

from alliance.cli.actor import cli_actor
from alliance.cli.clients import clients_app
from alliance.cli.common import CliError, console, open_env
from alliance.cli.keys import app as keys_app
from core.audit import verify as verify_chain
from core.clients import ClientsError
from core.notes import (
    InvalidImport,
    NewNote,
    NotesError,
    NoteView,
    create_note,
    erase_client,
    export_client,
    export_html,
    get_note,
    import_notes,
    list_notes,
    reencrypt_clients,
    session_ref,
)

notes_app = typer.Typer(help="Encrypted session notes (progress and psychotherapy notes).", no_args_is_help=True)
audit_app = typer.Typer(help="The hash-chained audit log of notes and client records.", no_args_is_help=True)


def _read_text(text: str | None, file: Path | None) -> str:
    if text is not None and file is None:
        return text
    if file is None or text is not None:
        raise CliError("give the note's text with exactly one of --text or --file")
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{file} is not UTF-8 text") from None


def note_json(n: NoteView, *, history: bool = False) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": n.id,
        "session_id": n.session_id,
        "kind": n.kind.value,
        "version": n.version,
        "created_at": n.created_at.isoformat(),
        "updated_at": n.updated_at.isoformat(),
        "signed_at": n.signed_at.isoformat() if n.signed_at else None,
        "text": n.text,
    }
    if history:
        row["history"] = [
            {"version": v.version, "created_at": v.created_at.isoformat(), "text": v.text} for v in n.history
        ]
    return row


@notes_app.command("add")
def add(
    session: int = typer.Argument(..., help="The session id (see 'alliance sessions')."),
    kind: str = typer.Option("progress", "--kind", help="progress, or process (psychotherapy note, author only)."),
    text: str | None = typer.Option(None, "--text", help="The note's Markdown text."),
    file: Path | None = typer.Option(None, "--file", help="Read the Markdown text from a file ('-': stdin)."),
) -> None:
    """Write a new note for a session."""
    body = _read_text(text, file)
    env = open_env()
    try:
        view = create_note(env.store, cli_actor(env.therapist_id), session, body, kind)
    except NotesError as exc:
        raise CliError(str(exc)) from None
    console.print(f"note {view.id} ({view.kind.value}) written for session {session}, version {view.version}")


def _parse_import(raw: bytes, where: str) -> list[NewNote]:
    """JSON Lines: one ``{"session": ID, "text": "...", "kind": "progress"}`` per line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError(f"{where} is not UTF-8 text") from None
    items: list[NewNote] = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise CliError(f"{where} line {number}: not a JSON object") from None
        if not isinstance(row, dict) or set(row) - {"session", "text", "kind"}:
            raise CliError(f'{where} line {number}: expected {{"session": ID, "text": "...", "kind": "progress"}}')
        session, body, kind = row.get("session"), row.get("text"), row.get("kind", "progress")
        if not isinstance(session, int) or isinstance(session, bool) or not isinstance(body, str):
            raise CliError(f"{where} line {number}: 'session' must be a session id and 'text' a string")
        if not isinstance(kind, str):
            raise CliError(f"{where} line {number}: 'kind' must be 'progress' or 'process'")
        items.append(NewNote(session, body, kind))
    return items


@notes_app.command("import")
def import_(
    file: Path = typer.Argument(..., help='JSON Lines, one {"session": ID, "text": "...", "kind": "..."} a line.'),
) -> None:
    """Write many notes at once: all of them or, if any line is wrong, none (the line is named)."""
    try:
        raw = sys.stdin.buffer.read() if str(file) == "-" else file.read_bytes()
    except OSError as exc:
        raise CliError(f"cannot read {file}: {exc.strerror or type(exc).__name__}") from None
    items = _parse_import(raw, str(file))
    env = open_env()
    try:
        written = import_notes(env.store, cli_actor(env.therapist_id), items)
    except InvalidImport as exc:
        # The item's position among the file's notes (blank lines do not count).
        raise CliError(f"{file}: {exc}; nothing was imported") from None
    except NotesError as exc:
        raise CliError(f"{exc}; nothing was imported") from None
    sessions = len({n.session_id for n in written})
    console.print(f"imported {len(written)} note(s) for {sessions} session(s)", highlight=False)


@notes_app.command("show")
def show(
    session: int = typer.Argument(..., help="The session id."),
    history: bool = typer.Option(False, "--history", help="Every version, not only the current one."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Print the session's notes (current text; --history for every version)."""
    env = open_env()
    actor = cli_actor(env.therapist_id)
    try:
        ref = session_ref(env.store, actor, session)
        notes = list_notes(env.store, actor, session)
        if history:
            notes = [get_note(env.store, actor, session, n.id) for n in notes]
    except NotesError as exc:
        raise CliError(str(exc)) from None
    if as_json:
        payload = {
            "session": session,
            "client": ref.client_code,
            "event_removed": ref.event_removed,
            "notes": [note_json(n, history=history) for n in notes],
        }
        console.print_json(json.dumps(payload))
        return
    state = " (event removed from calendar)" if ref.event_removed else ""
    console.print(f"session {session} · {ref.client_code} · {ref.start.isoformat()}{state}", highlight=False)
    if not notes:
        console.print("no notes yet")
    for n in notes:
        signed = f", signed {n.signed_at.isoformat()}" if n.signed_at else ""
        console.print(f"\n── note {n.id} · {n.kind.value} · version {n.version}{signed}", highlight=False, markup=False)
        versions = n.history if history else ()
        for v in versions:
            console.print(f"-- version {v.version} ({v.created_at.isoformat()})", highlight=False, markup=False)
            console.print(v.text, highlight=False, markup=False)
        if not versions:
            console.print(n.text, highlight=False, markup=False)


@audit_app.command("verify")
def verify() -> None:
    """Check the audit log's hash chain; exit 1 naming each removed or altered entry."""
    env = open_env()
    with env.store.session() as session:
        count, findings = verify_chain(session)
    if not findings:
        console.print(f"audit log intact: {count} entries")
        return
    for finding in findings:
        console.print(f"entry {finding.seq}: {finding.problem}", highlight=False, markup=False)
    console.print(f"audit log damaged: {len(findings)} problem(s) in {count} entries", highlight=False)
    raise typer.Exit(1)


def _write_private(path: Path, data: str) -> None:
    """Write atomically, readable by the owner only: an export is a client's health record."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or type(exc).__name__}") from None


@clients_app.command("erase")
def erase(
    code: str = typer.Argument(..., help="The client's code."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Erase a client for good: destroy their key, so notes and contact details are unrecoverable."""
    if not yes:
        typer.confirm(f"Erase client {code} for good? Their notes and details cannot be recovered", abort=True)
    env = open_env()
    try:
        result = erase_client(env.store, cli_actor(env.therapist_id), code)
    except ClientsError as exc:
        raise CliError(str(exc)) from None
    if result.erased_now:
        console.print(f"erased client {result.code}: its key is destroyed ({result.notes} note(s) unrecoverable)")
    else:
        console.print(f"client {result.code} was already erased")


@clients_app.command("export")
def export(
    code: str = typer.Argument(..., help="The client's code."),
    out: Path = typer.Option(..., "--out", help="The JSON bundle to write (mode 0600)."),
    html_out: Path | None = typer.Option(None, "--html", help="The readable HTML (default: OUT with .html)."),
    include_process_notes: bool = typer.Option(
        False, "--include-process-notes", help="Also psychotherapy notes: a disclosure, needs --reason."
    ),
    reason: str | None = typer.Option(None, "--reason", help="Why psychotherapy notes are disclosed (recorded)."),
) -> None:
    """Export a client's record: sessions, progress notes with every version, calendar history."""
    env = open_env()
    try:
        bundle = export_client(
            env.store,
            cli_actor(env.therapist_id),
            code,
            include_process_notes=include_process_notes,
            reason=reason,
        )
    except (ClientsError, NotesError) as exc:
        raise CliError(str(exc)) from None
    page = html_out or out.with_suffix(".html")
    _write_private(out, json.dumps(bundle, ensure_ascii=False, indent=2))
    _write_private(page, export_html(bundle))
    notes = sum(len(s["notes"]) for s in bundle["sessions"]) + len(bundle["other_notes"])
    console.print(
        f"exported client {bundle['client']['code']}: {len(bundle['sessions'])} session(s), {notes} note(s) "
        f"-> {out}, {page}",
        highlight=False,
        markup=False,
    )


@keys_app.command("reencrypt")
def reencrypt() -> None:
    """Give every client a new data key and re-encrypt their notes and details under it.

    Resumable: after a crash, run it again and it continues with the clients not yet done.
    """
    env = open_env()

    def progress(done: int, total: int) -> None:
        console.print(f"re-encrypted client {done}/{total}", highlight=False)
        sys.stdout.flush()  # a supervisor (or a test) follows the progress line by line

    result = reencrypt_clients(env.store, cli_actor(env.therapist_id), progress=progress)
    how = "resumed run" if result.resumed else "run"
    console.print(f"{how} {result.run_id} finished: {result.clients} client(s) re-keyed in total", highlight=False)
    if result.retired:
        console.print(f"{result.retired} superseded key(s) no longer in use destroyed", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(notes_app, name="notes")
    app.add_typer(audit_app, name="audit")
