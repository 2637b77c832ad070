"""``alliance checklists show / run / templates / edit / flags``: the therapist's frame checklists of a session.

Output names the client by code only. ``run`` asks item by item (Enter leaves an item open), or
takes the answers from a JSON file::

    {"S1": "done", "S2": {"status": "done", "text": "Home; callback +34 600 000 000"},
     "S6": {"status": "skipped", "reason": "next week"}}
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from alliance.cli.common import CliError, console, open_env
from core.checklists import (
    AnswerInput,
    AnswerStatus,
    ChecklistError,
    ChecklistItem,
    InvalidChecklist,
    Phase,
    Response,
    RunView,
    SessionChecklists,
    list_templates,
    new_template_version,
    open_flags,
    parse_phase,
    record_answers,
    session_checklists,
)
from core.clients import UnknownSession
from core.mirror import instant_text

app = typer.Typer(help="Therapist checklists of a session (before, at the start, after).", no_args_is_help=True)

TITLES = {Phase.PRE: "before the session", Phase.START: "at the start", Phase.POST: "after the session"}


def _run_json(run: RunView) -> dict[str, Any]:
    return {
        "phase": run.phase.value,
        "template_version": run.template.version,
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "complete": run.complete,
        "items": [
            {
                "key": s.item.key,
                "text": s.item.text,
                "status": s.answer.status.value if s.answer else None,
                "text_answer": s.answer.text if s.answer else None,
                "reason": s.answer.reason if s.answer else None,
                "answered_at": s.answer.answered_at.isoformat() if s.answer else None,
            }
            for s in run.items
        ],
    }


def _found_json(found: SessionChecklists) -> dict[str, Any]:
    return {
        "session": found.session.id,
        "client": found.session.client_code,
        "start": instant_text(found.session.start, found.session.all_day),
        "online": found.online,
        "first_session": found.first_session,
        "lists": [_run_json(r) for r in found.runs],
        "flags": [{"phase": f.phase.value, "key": f.key, "skipped": f.skipped} for f in found.flags],
    }


def _load(store_env: Any, session_id: int) -> SessionChecklists:
    try:
        return session_checklists(store_env.store, store_env.therapist_id, session_id)
    except UnknownSession:
        raise CliError(f"no session with id {session_id} (see 'alliance sessions')") from None


@app.command("show")
def show(
    session_id: int = typer.Argument(..., help="The session's id (see 'alliance sessions --json')."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show the three lists of a session with their answers and open flags."""
    env = open_env()
    found = _load(env, session_id)
    if as_json:
        console.print_json(json.dumps(_found_json(found)))
        return
    s = found.session
    console.print(
        f"session {s.id} · {s.client_code} · {instant_text(s.start, s.all_day)} · "
        f"{'online' if found.online else 'in person'}{' · first session' if found.first_session else ''}",
        highlight=False,
        markup=False,
    )
    for run in found.runs:
        table = Table(
            "key", "item", "answer", title=f"{run.phase.value}: {TITLES[run.phase]} (v{run.template.version})"
        )
        for state in run.items:
            answer = state.answer
            if answer is None:
                cell = "open"
            elif answer.status is AnswerStatus.SKIPPED:
                cell = f"skipped: {answer.reason or ''}"
            else:
                cell = "done" + (f": {answer.text}" if answer.text else "")
            table.add_row(state.item.key, state.item.text, cell)
        console.print(table)
    for flag in found.flags:
        console.print(f"flag: {flag.key} is not done yet ({flag.phase.value} list)", highlight=False, markup=False)


def _answers_from_file(path: Path) -> list[AnswerInput]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no such file {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CliError(f"{path}: expected an object of item key -> 'done' or {{status, text, reason}}")
    answers = []
    for key, value in data.items():
        if isinstance(value, str):
            answers.append(AnswerInput(str(key), value))
        elif isinstance(value, dict) and isinstance(value.get("status"), str):
            text, reason = value.get("text"), value.get("reason")
            if (text is not None and not isinstance(text, str)) or (reason is not None and not isinstance(reason, str)):
                raise CliError(f"{path}: item {key}: text and reason are strings")
            answers.append(AnswerInput(str(key), value["status"], text, reason))
        else:
            raise CliError(f"{path}: item {key}: give 'done', 'skipped' or {{status, text, reason}}")
    return answers


def _ask(run: RunView) -> list[AnswerInput]:
    answers = []
    console.print(f"{TITLES[run.phase]}: d = done, s = skipped, Enter = leave as it is", highlight=False)
    for state in run.items:
        current = state.answer.status.value if state.answer else "open"
        while True:
            choice = (
                typer.prompt(f"{state.item.key} {state.item.text} [{current}]", default="", show_default=False)
                .strip()
                .lower()
            )
            if choice in ("", "d", "done", "s", "skip", "skipped"):
                break
            console.print("answer d, s or press Enter", highlight=False)
        if choice in ("d", "done"):
            text = None
            if state.item.response is Response.TEXT:
                while not text:
                    text = typer.prompt("  details (needed)", default="", show_default=False).strip()
            answers.append(AnswerInput(state.item.key, AnswerStatus.DONE, text))
        elif choice in ("s", "skip", "skipped"):
            reason = ""
            while not reason:
                reason = typer.prompt("  why skipped", default="", show_default=False).strip()
            answers.append(AnswerInput(state.item.key, AnswerStatus.SKIPPED, reason=reason))
    return answers


@app.command("run")
def run_list(
    session_id: int = typer.Argument(..., help="The session's id (see 'alliance sessions --json')."),
    which: str = typer.Option(..., "--list", help="pre, start or post."),
    answers_file: Path | None = typer.Option(None, "--answers", help="A JSON file of answers instead of questions."),
) -> None:
    """Go through one list of a session, item by item, or record answers from a file."""
    env = open_env()
    try:
        phase = parse_phase(which)
    except InvalidChecklist:
        raise CliError("--list is one of pre, start, post") from None
    found = _load(env, session_id)
    run = found.run(phase)
    answers = _answers_from_file(answers_file) if answers_file is not None else _ask(run)
    if not answers:
        console.print("nothing to record", highlight=False)
        return
    try:
        saved = record_answers(env.store, env.therapist_id, session_id, phase, answers)
    except (InvalidChecklist, ChecklistError) as exc:
        raise CliError(str(exc)) from None
    done = sum(1 for s in saved.items if s.answer is not None)
    console.print(
        f"session {session_id} {phase.value}: {len(answers)} answer(s) recorded, {done} of {len(saved.items)} answered",
        highlight=False,
        markup=False,
    )


@app.command("templates")
def templates(
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    all_versions: bool = typer.Option(False, "--all", help="Every version, not only the current ones."),
) -> None:
    """The therapist's checklists (version 1 is the reference's defaults)."""
    env = open_env()
    views = list_templates(env.store, env.therapist_id, all_versions=all_versions)
    rows = [
        {
            "id": v.id,
            "phase": v.phase.value,
            "version": v.version,
            "current": v.current,
            "items": [i.to_json() for i in v.items],
        }
        for v in views
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    for v in views:
        console.print(f"{v.phase.value} v{v.version}{' (current)' if v.current else ''}", highlight=False)
        for item in v.items:
            console.print(f"  {item.key}  {item.text}", highlight=False, markup=False)


def _items_from_file(path: Path) -> list[ChecklistItem]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise CliError(f"no such file {path}") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CliError(f"{path} is not valid JSON ({exc})") from None
    if isinstance(data, dict):  # one entry of 'templates --json' as it is
        data = data.get("items")
    if not isinstance(data, list) or not all(isinstance(i, dict) for i in data):
        raise CliError(f"{path}: expected a list of items ({{key, text, ...}}) or a template with 'items'")
    items = []
    for index, raw in enumerate(data):
        if not isinstance(raw.get("key"), str) or not isinstance(raw.get("text"), str):
            raise CliError(f"{path}: item {index} needs a 'key' and a 'text'")
        try:
            items.append(ChecklistItem.from_json(raw))
        except ValueError:
            raise CliError(f"{path}: item {index}: 'applies' or 'response' has an unknown value") from None
    return items


@app.command("edit")
def edit(
    which: str = typer.Option(..., "--list", help="pre, start or post."),
    items_file: Path = typer.Option(..., "--file", help="JSON: the whole list (as 'templates --json' prints it)."),
) -> None:
    """Save an edited list as its next version; sessions already started keep theirs."""
    env = open_env()
    try:
        view = new_template_version(env.store, env.therapist_id, which, _items_from_file(items_file))
    except InvalidChecklist as exc:
        where = f" ({exc.field})" if exc.field else ""
        raise CliError(f"{exc}{where}") from None
    console.print(f"{view.phase.value} list: version {view.version} saved, {len(view.items)} item(s)", highlight=False)


@app.command("flags")
def flags(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Sessions with a blocking item not done yet (S2, the client's location, on online sessions)."""
    env = open_env()
    found = open_flags(env.store, env.therapist_id)
    rows = [
        {"session": sid, "phase": f.phase.value, "key": f.key, "skipped": f.skipped}
        for sid in sorted(found)
        for f in found[sid]
    ]
    if as_json:
        console.print_json(json.dumps(rows))
        return
    for row in rows:
        console.print(f"session {row['session']}: {row['key']} not done ({row['phase']} list)", highlight=False)


def register(root: typer.Typer) -> None:
    """Add ``alliance checklists`` to ``root``."""
    root.add_typer(app, name="checklists")
