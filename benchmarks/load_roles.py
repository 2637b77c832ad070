"""The two process roles of the scale-out load test, for the stack that has no separate commands yet.

    python -m benchmarks.load_roles web --port 8001   # the web app only: webhooks, API (no worker)
    python -m benchmarks.load_roles worker            # the embedded worker loop only (no web server)

Both read the usual ``ALLIANCE_*`` settings and are built from the same pieces ``alliance serve``
runs (``alliance.app.create_app`` with ``worker=None``, which the app supports for web-only
processes, and ``alliance.worker.EmbeddedWorker``); they stop on SIGTERM / SIGINT. Once
``alliance serve --no-worker`` and ``alliance worker`` exist, ``benchmarks.load_storm --stack
procrastinate`` runs those instead and this module is only the baseline.
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType


def _web(port: int) -> None:
    import uvicorn

    from alliance.app import create_app
    from alliance.keys import open_store
    from alliance.settings import Settings

    settings = Settings()
    store = open_store(settings)
    try:
        app = create_app(settings, store=store, worker=None)
        uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, log_level="warning", log_config=None)
    finally:
        store.close()


def _worker() -> None:
    from alliance.keys import open_store
    from alliance.settings import Settings
    from alliance.worker import EmbeddedWorker

    settings = Settings()
    store = open_store(settings)
    stop = threading.Event()

    def _stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _stop)
    worker = EmbeddedWorker(store, settings)
    worker.start()
    try:
        stop.wait()
    finally:
        worker.stop(timeout=30)
        store.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load_roles", description=__doc__.split("\n")[0])
    parser.add_argument("role", choices=("web", "worker"))
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    if args.role == "web":
        _web(args.port)
    else:
        _worker()


if __name__ == "__main__":
    main()
