"""``alliance worker``: a worker process (procrastinate on PostgreSQL, issue 9; the embedded queue on SQLite)."""

from __future__ import annotations

import logging
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any

import typer

from alliance import gc_tuning
from alliance.cli.common import CliError, err_console
from alliance.keys import open_store
from alliance.queue.selection import PROCRASTINATE, QueueConfigError, queue_kind
from alliance.settings import Settings

logger = logging.getLogger(__name__)


def _health_server(port: int, alive: Any) -> ThreadingHTTPServer:
    """``GET /readyz``: 200 while the worker's heartbeat is fresh, else 503 (for a supervisor's probe)."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/readyz", "/healthz"):
                self.send_error(404)
                return
            ok = self.path == "/healthz" or alive()
            body = b'{"status":"ready"}' if ok else b'{"status":"unavailable","checks":{"worker":"heartbeat stale"}}'
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # probes every few seconds would flood the log

    server = ThreadingHTTPServer(("127.0.0.1", port), Health)
    threading.Thread(target=server.serve_forever, name="worker-health", daemon=True).start()
    return server


def worker(
    concurrency: int | None = typer.Option(
        None,
        "--concurrency",
        min=1,
        max=64,
        help="Jobs this process runs at once (PostgreSQL; default ALLIANCE_WORKER_CONCURRENCY, 4).",
        show_default=False,
    ),
    health_port: int = typer.Option(
        None, "--health-port", min=0, max=65535, help="Serve GET /readyz on 127.0.0.1:PORT (503 when stale)."
    ),
) -> None:
    """Run a job worker until Ctrl-C or SIGTERM: procrastinate on PostgreSQL, the embedded queue on SQLite."""
    from alliance.queue.worker import QueueWorker

    settings = Settings()
    try:
        kind = queue_kind(settings)
    except QueueConfigError as exc:
        raise CliError(str(exc)) from None
    if kind != PROCRASTINATE:
        _embedded_worker(settings, concurrency, health_port)
        return
    store = open_store(settings)
    queue_worker = QueueWorker(store, settings, concurrency=concurrency)  # None: the setting's
    gc_tuning.tune_for_long_running_process()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        queue_worker.stop()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stop)
    server = _health_server(health_port, queue_worker.is_alive) if health_port is not None else None
    err_console.print(f"alliance: worker running (concurrency {queue_worker.concurrency})", highlight=False)
    try:
        queue_worker.run()
    finally:
        if server is not None:
            server.shutdown()
        store.close()
        logger.info("stopped")


def _embedded_worker(settings: Settings, concurrency: int | None, health_port: int | None) -> None:
    """The embedded queue's worker in a process of its own, beside ``alliance serve --no-worker``.

    On one machine with SQLite this keeps the worker's CPU (and its interpreter lock) away from the
    web process answering webhooks: with the Zoom webhook storm of benchmarks/README.md the
    acknowledging process met both targets this way. The web process cannot wake a worker in
    another process, so queued work is found at the next poll (ALLIANCE_WORKER_POLL_SECONDS).
    """
    from alliance.worker import EmbeddedWorker

    if concurrency not in (None, 1):
        raise CliError("--concurrency applies to the PostgreSQL queue; on SQLite run one 'alliance worker'")
    store = open_store(settings)
    embedded = EmbeddedWorker(store, settings)
    gc_tuning.tune_for_long_running_process()
    stopping = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, stop)
    server = _health_server(health_port, embedded.is_alive) if health_port is not None else None
    embedded.start()
    err_console.print("alliance: worker running (embedded queue)", highlight=False)
    try:
        stopping.wait()
    finally:
        embedded.stop(timeout=30)
        if server is not None:
            server.shutdown()
        store.close()
        logger.info("stopped")


def register(app: typer.Typer) -> None:
    """Add ``alliance worker``."""
    app.command("worker")(worker)
