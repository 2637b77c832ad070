"""Stopping an emulator while a client keeps a TLS connection to it open (as the shared clients do)."""

from __future__ import annotations

import ssl

import httpx
import pytest

from sandbox.outlook.server import run_outlook_emulator


def test_an_emulator_stops_without_waiting_for_an_idle_kept_alive_tls_client(capfd: pytest.CaptureFixture[str]) -> None:
    with run_outlook_emulator() as emulator:
        client = httpx.Client(verify=ssl.create_default_context(cafile=str(emulator.ca_file)))
        assert client.get(f"{emulator.base_url}/_sandbox/requests").status_code == 200
        # The client keeps the connection in its pool and never reads from it again.
    try:
        # A TLS close waits for the client's close_notify: without aborting the idle connection
        # uvicorn waited out its graceful timeout and said so at ERROR on its stderr handler.
        assert "graceful shutdown exceeded" not in capfd.readouterr().err
        # After the server is gone the client's next request fails cleanly (nothing listens).
        with pytest.raises(httpx.ConnectError):
            client.get(f"{emulator.base_url}/_sandbox/requests")
    finally:
        client.close()
