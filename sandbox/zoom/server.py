"""Run the Zoom emulator on a loopback port in a background thread.

::

    with run_zoom_emulator() as emu:
        client = ZoomClient(..., base_uri=emu.api_url, oauth_uri=emu.token_url)
        emu.sender.meeting_started(meeting_id)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import uvicorn

from sandbox.listen import listen_tcp
from sandbox.stopping import EmulatorServer
from sandbox.zoom.app import AUTHORIZE_PATH, TOKEN_PATH, create_app
from sandbox.zoom.state import ZoomState
from sandbox.zoom.webhooks import WebhookSender


class RunningZoom(NamedTuple):
    base_url: str
    state: ZoomState
    sender: WebhookSender

    @property
    def api_url(self) -> str:
        return self.base_url + "/v2"

    @property
    def token_url(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH


@contextmanager
def run_zoom_emulator(
    state: ZoomState | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningZoom]:
    state = state if state is not None else ZoomState()
    sender = WebhookSender(state)
    sock = listen_tcp(host, port)
    base_url = f"http://{host}:{sock.getsockname()[1]}"
    state.base_url = base_url
    config = uvicorn.Config(
        create_app(state, sender), log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = EmulatorServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="zoom-emulator", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the Zoom emulator failed to start")
            thread.join(0.01)
        yield RunningZoom(base_url, state, sender)
    finally:
        sender.join(timeout=2)
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
