"""Serve an ASGI app on a loopback port in a thread (real HTTP for the webhook tests and benchmark).

:func:`serve` picks the port and yields the base URL. Tests whose app must know its own URL before
it is built (``ALLIANCE_PUBLIC_URL``) take a socket first (:func:`loopback`) and serve on it
(:func:`serve_on`).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from sandbox.listen import listen_tcp


def loopback(**listen: Any) -> tuple[socket.socket, str]:
    """A listening socket on 127.0.0.1 (a free port) and its base URL."""
    sock = listen_tcp(**listen)
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serve_on(sock: socket.socket, app: Any, **config: Any) -> Iterator[None]:
    """``app`` under uvicorn on ``sock`` until the block ends; then stopped and the socket closed."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, **config))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the app failed to start")
            thread.join(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


@contextmanager
def serve(app: Any, **config: Any) -> Iterator[str]:
    sock, url = loopback(backlog=1024)
    with serve_on(sock, app, **{"lifespan": "off", **config}):
        yield url
