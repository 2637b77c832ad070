"""A uvicorn server for the emulators that stops at once, kept-alive TLS connections included.

On stopping, uvicorn closes a connection with no request in flight and waits for it to go. For a
TLS connection closing is a handshake: the server sends ``close_notify`` and waits for the
client's, and an idle client in a connection pool (httpx, httplib2, the shared clients of
integrations/) never answers. So every stop waited out ``timeout_graceful_shutdown`` and logged
"Cancel 0 running task(s), timeout graceful shutdown exceeded" at ERROR (2 s per emulator stopped
in tests and benchmarks, and a false error in their output). Idle connections are aborted
instead (no ``close_notify``: the client sees a reset and, as after any server restart, opens a
new connection); requests in flight still finish as before.
"""

from __future__ import annotations

import socket

import uvicorn

__all__ = ["EmulatorServer"]


class EmulatorServer(uvicorn.Server):
    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for connection in list(self.server_state.connections):
            cycle = getattr(connection, "cycle", None)
            transport = getattr(connection, "transport", None)
            if transport is not None and (cycle is None or cycle.response_complete):
                transport.abort()
        await super().shutdown(sockets)
