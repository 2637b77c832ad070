"""The emulators' listening socket: connections accepted on it send small responses at once."""

from __future__ import annotations

import asyncio
import socket

from sandbox.listen import listen_tcp


async def _nodelay_of_accepted_connection(listener: socket.socket) -> int:
    seen: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        seen.set_result(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))
        writer.close()

    server = await asyncio.start_server(accepted, sock=listener)
    async with server:
        _, writer = await asyncio.open_connection(*listener.getsockname())
        value = await asyncio.wait_for(seen, 10)
        writer.close()
    return value


def test_accepted_connections_have_nagle_off() -> None:
    # uvicorn serves the emulators through asyncio, which sets TCP_NODELAY on an accepted
    # connection only when the listener says it is TCP; with Nagle on, every two-piece response
    # waited ~40 ms for the client's delayed ACK.
    assert asyncio.run(_nodelay_of_accepted_connection(listen_tcp())) != 0


def test_a_protocol_zero_listener_would_leave_nagle_on() -> None:
    # Why listen_tcp names the protocol: the plain socket.socket() the servers used before.
    plain = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    plain.bind(("127.0.0.1", 0))
    plain.listen(8)
    assert asyncio.run(_nodelay_of_accepted_connection(plain)) == 0
