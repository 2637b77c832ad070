"""``alliance serve``: the web app and the embedded worker in one process."""

from __future__ import annotations

import logging
import signal
from types import FrameType

import typer

from alliance import gc_tuning
from alliance.cli.common import CliError, err_console
from alliance.keys import open_store
from alliance.queue.selection import PROCRASTINATE, QueueConfigError, queue_kind
from alliance.settings import Settings
from alliance.worker import BackgroundWorker, EmbeddedWorker
from core.store import Store

logger = logging.getLogger(__name__)


def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="TCP port (0 picks a free one)."),
    no_worker: bool = typer.Option(False, "--no-worker", help="Web only: workers run elsewhere ('alliance worker')."),
) -> None:
    """Run the web service and a worker until interrupted (Ctrl-C or SIGTERM)."""
    import uvicorn  # imported here: the other commands should not pay for the web stack

    from alliance.app import create_app

    settings = Settings()
    # Migrates and verifies the master key against the data: a wrong key stops here, on one line.
    store = open_store(settings)
    worker = None if no_worker else _worker(store, settings)
    if worker is not None:
        worker.start()
    # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal with the previous
    # handler restored. With the default handler that kills the process before the worker is
    # stopped; this one turns it into a normal exit through the ``finally`` below.
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _exit_quietly)
    try:
        app = create_app(settings, store=store, worker=worker)
        gc_tuning.tune_for_long_running_process()
        err_console.print(f"alliance: serving on http://{host}:{port}", highlight=False)
        # access_log off: uvicorn would log raw paths (a setup link carries its secret in the path);
        # portal.middleware.RequestLog logs route templates instead. uvicorn handles SIGINT/SIGTERM
        # by finishing in-flight requests and returning here. log_config=None keeps uvicorn's own
        # loggers on the handler alliance.logging configured, behind its redaction filter.
        uvicorn.run(app, host=host, port=port, access_log=False, log_level="info", log_config=None, server_header=False)
    finally:
        if worker is not None:
            worker.stop()
        store.close()
        logger.info("stopped")


def _worker(store: Store, settings: Settings) -> BackgroundWorker:
    # PostgreSQL: one procrastinate worker in this process (issue 9); SQLite: the embedded worker.
    try:
        kind = queue_kind(settings)
    except QueueConfigError as exc:
        store.close()
        raise CliError(str(exc)) from None
    if kind == PROCRASTINATE:
        from alliance.queue.worker import QueueWorker

        return QueueWorker(store, settings)
    return EmbeddedWorker(store, settings)


def _exit_quietly(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def register(app: typer.Typer) -> None:
    """Add ``alliance serve``."""
    app.command("serve")(serve)
