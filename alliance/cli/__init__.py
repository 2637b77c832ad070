"""The ``alliance`` command line."""

from __future__ import annotations

import logging
import sys

import typer
from pydantic import ValidationError

from alliance.cli import accounts as account_commands
from alliance.cli import attendance as attendance_commands  # who cancelled a session (R8)
from alliance.cli import checklists as checklist_commands
from alliance.cli import clients as client_commands
from alliance.cli import db as db_commands
from alliance.cli import demo as demo_commands
from alliance.cli import jobs as job_commands
from alliance.cli import keys as key_commands
from alliance.cli import links as link_commands
from alliance.cli import mirror as mirror_commands
from alliance.cli import notes as note_commands  # session notes, audit, erasure and export
from alliance.cli import ratings as rating_commands
from alliance.cli import sandbox as sandbox_commands
from alliance.cli import serve as serve_commands
from alliance.cli import video as video_commands
from alliance.cli import worker as worker_commands  # scale-out worker process (issue 9)
from alliance.cli.common import CliError, err_console
from alliance.logging import configure_logging
from alliance.settings import ConfigFileError, Settings
from core.crypto import MasterKeyError
from core.sync import SourceError, SyncInProgress
from integrations.base import InvalidSettings, ProviderError

app = typer.Typer(
    name="alliance",
    help="Alliance: mirror a therapist's calendars and add what online therapy needs around each session.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr."),
) -> None:
    try:
        fmt = Settings().log_format
    except (ValidationError, ConfigFileError):  # the command itself reports bad settings
        fmt = "text"
    configure_logging(level=logging.INFO if verbose else logging.WARNING, fmt=fmt, stream=sys.stderr)


mirror_commands.register(app)
demo_commands.register(app)
serve_commands.register(app)
worker_commands.register(app)
account_commands.register(app)
client_commands.register(app)
rating_commands.register(client_commands.clients_app)
job_commands.register(app)
note_commands.register(app)
checklist_commands.register(app)
sandbox_commands.register(app)
app.add_typer(db_commands.app, name="db")
app.add_typer(key_commands.app, name="keys")
video_commands.register(app, mirror_commands.connect_app)
link_commands.register(app)
attendance_commands.register(app)


def _setting_problem(loc: tuple[int | str, ...], message: str) -> str:
    message = message.removeprefix("Value error, ")
    return f"ALLIANCE_{'_'.join(str(p) for p in loc).upper()}: {message}" if loc else message


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def main() -> None:
    """Console entry point: known errors become one clear line on stderr and exit code 1."""
    try:
        # Without standalone mode click returns a command's typer.Exit code instead of exiting.
        result = app(standalone_mode=False)
        sys.exit(result if isinstance(result, int) else 0)
    except (typer.Exit, SystemExit) as exc:
        code = getattr(exc, "exit_code", getattr(exc, "code", 0))
        sys.exit(code if isinstance(code, int) else 1)
    except typer.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except ValidationError as exc:
        problems = "; ".join(_setting_problem(e["loc"], e["msg"]) for e in exc.errors())
        err_console.print(f"error: invalid settings: {problems}", highlight=False)
        sys.exit(2)
    except (
        CliError,
        ConfigFileError,
        SourceError,
        InvalidSettings,
        ProviderError,
        SyncInProgress,
        MasterKeyError,
    ) as exc:
        err_console.print(f"error: {_first_line(str(exc))}", highlight=False, markup=False)
        sys.exit(1)
    except Exception as exc:  # click usage errors arrive here in non-standalone mode
        from click.exceptions import ClickException

        if isinstance(exc, ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        raise
