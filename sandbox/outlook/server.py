"""Run the emulator over HTTPS on a loopback port in a background thread.

::

    with run_outlook_emulator() as emu:
        app = msal.ConfidentialClientApplication(
            DEFAULT_CLIENT_ID, client_credential=DEFAULT_CLIENT_SECRET, authority=emu.authority,
            instance_discovery=False, http_client=session_trusting(emu.ca_file))
        emu.state.seed_event({...})

The socket is bound before the thread starts (port 0 picks a free port); a fresh test CA is made
for each run and ``emu.ca_file`` is what clients must trust.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import uvicorn

from sandbox.listen import listen_tcp
from sandbox.outlook.app import create_app
from sandbox.outlook.state import OutlookState
from sandbox.outlook.tls import make_test_certificates
from sandbox.stopping import EmulatorServer

TENANT = "organizations"


class RunningEmulator(NamedTuple):
    base_url: str
    state: OutlookState
    ca_file: Path

    @property
    def authority(self) -> str:
        """For MSAL's ``authority=`` (https, with a tenant path segment)."""
        return f"{self.base_url}/{TENANT}"

    @property
    def graph_url(self) -> str:
        return f"{self.base_url}/v1.0"


@contextmanager
def run_outlook_emulator(
    state: OutlookState | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> Iterator[RunningEmulator]:
    state = state if state is not None else OutlookState()
    certificates = make_test_certificates()
    sock = listen_tcp(host, port)
    base_url = f"https://{host}:{sock.getsockname()[1]}"
    state.base_url = base_url
    config = uvicorn.Config(
        create_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=2,
        timeout_keep_alive=30,
        ssl_certfile=str(certificates.cert_file),
        ssl_keyfile=str(certificates.key_file),
    )
    server = EmulatorServer(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="outlook-emulator", daemon=True)
    thread.start()
    state.notifier.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the Outlook emulator failed to start")
            thread.join(0.01)
        yield RunningEmulator(base_url, state, certificates.ca_file)
    finally:
        state.notifier.stop()
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


__all__ = ["TENANT", "RunningEmulator", "run_outlook_emulator"]
