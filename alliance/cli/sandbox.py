"""``alliance sandbox``: run the provider emulators on loopback ports, to watch a mirror follow edits.

Prints, for each emulator, the ``ALLIANCE_*`` variables that aim Alliance at it and a few commands
to try; runs until Ctrl-C or SIGTERM (a supervisor's or a script's stop: the emulators stop and a
temporary work directory is removed either way). The emulators are test infrastructure
(``sandbox/``), imported only when this command runs.
"""

from __future__ import annotations

import shlex
import signal
import tempfile
import threading
from contextlib import ExitStack
from pathlib import Path
from types import FrameType

import typer

from alliance.cli.common import CliError, console, err_console


def _stop(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM ends the run as Ctrl-C does: emulators stopped, files removed


def sandbox(
    names: list[str] = typer.Argument(None, help="Emulators to start (default: all of them)."),
    host: str = typer.Option("127.0.0.1", "--host", help="Loopback address to listen on."),
    port: int = typer.Option(
        0, "--port", min=0, max=65535, help="Port of the first emulator (0: free ports); the next ones follow it."
    ),
    workdir: Path | None = typer.Option(
        None, "--workdir", help="Where to write token files (default: a temporary directory)."
    ),
) -> None:
    """Start provider emulators (Google Calendar, Outlook, Zoom) and print how to point Alliance at them."""
    from sandbox.registry import SANDBOXES, sandbox_named

    if host not in ("127.0.0.1", "localhost", "::1"):
        raise CliError("the emulators accept any token and are for this machine only: use a loopback --host")
    try:
        chosen = [sandbox_named(n) for n in names] if names else list(SANDBOXES)
    except LookupError as exc:
        raise CliError(str(exc)) from None
    with ExitStack() as stack:
        directory = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="alliance-sandbox-")))
        directory.mkdir(parents=True, exist_ok=True)
        for offset, spec in enumerate(chosen):
            info = stack.enter_context(spec.start(host, port + offset if port else 0, directory))
            console.print(f"[bold]{spec.title}[/bold] emulator on {info.base_url}", highlight=False)
            console.print("  export these (or put them in ALLIANCE_CONFIG's file):", highlight=False)
            for key, value in info.env.items():
                console.print(f"    export {key}={shlex.quote(value)}", highlight=False, soft_wrap=True)
            if info.steps:
                console.print("  then try:", highlight=False)
                for step in info.steps:
                    console.print(f"    {step}", highlight=False, soft_wrap=True)
        err_console.print("Running; Ctrl-C stops the emulators.", highlight=False)
        signal.signal(signal.SIGTERM, _stop)
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            err_console.print("stopped", highlight=False)


def register(app: typer.Typer) -> None:
    """Add ``alliance sandbox``."""
    app.command("sandbox")(sandbox)
