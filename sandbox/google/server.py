"""Run the emulator on a loopback port in a background thread.

::

    with run_google_emulator() as emu:
        creds = Credentials(token=..., refresh_token=..., token_uri=emu.token_uri, ...)
        service = build("calendar", "v3", credentials=creds,
                        client_options={"api_endpoint": emu.api_endpoint}, static_discovery=True)
        emu.state.move_event("primary", event_id, {"dateTime": "..."})

``emu`` unpacks as ``(base_url, state)``. The socket is bound before the thread starts (port 0
picks a free port), so the URL is known and the server is accepting when the block is entered.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

import uvicorn

from sandbox.google.app import create_app
from sandbox.google.oauth import AUTHORIZE_PATH, REVOKE_PATH, TOKEN_PATH
from sandbox.google.state import GoogleState
from sandbox.listen import listen_tcp
from sandbox.stopping import EmulatorServer


class RunningEmulator(NamedTuple):
    base_url: str
    state: GoogleState

    @property
    def api_endpoint(self) -> str:
        """For ``client_options={"api_endpoint": ...}`` (includes the service path)."""
        return f"{self.base_url}/calendar/v3/"

    @property
    def token_uri(self) -> str:
        return self.base_url + TOKEN_PATH

    @property
    def authorize_url(self) -> str:
        return self.base_url + AUTHORIZE_PATH

    @property
    def revoke_uri(self) -> str:
        return self.base_url + REVOKE_PATH


@contextmanager
def run_google_emulator(
    state: GoogleState | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEmulator]:
    state = state if state is not None else GoogleState()
    state.reopen()
    sock = listen_tcp(host, port)  # accepting (queued) before uvicorn's loop runs
    bound_port = sock.getsockname()[1]
    base_url = f"http://{host}:{bound_port}"
    state.base_url = base_url
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
    )
    server = EmulatorServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="google-emulator", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the Google emulator failed to start")
            thread.join(0.01)
        yield RunningEmulator(base_url, state)
    finally:
        state.close()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
