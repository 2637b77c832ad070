"""The listening socket the emulators (and the tests' and benchmarks' own servers) hand to uvicorn."""

from __future__ import annotations

import socket


def listen_tcp(host: str = "127.0.0.1", port: int = 0, backlog: int = 128) -> socket.socket:
    """A TCP socket bound to ``host``:``port`` (0: any free port) and listening.

    Made with ``IPPROTO_TCP`` rather than protocol 0: asyncio turns Nagle's algorithm off on an
    accepted connection only when the socket says it is TCP, and accepted sockets take the
    listener's protocol. With Nagle on, a response written in two pieces (uvicorn writes the
    headers, then the body) waits for the client's delayed ACK, ~40 ms per small request on
    Linux: a delay no real provider adds, which made the Outlook emulator's series-master GETs
    take ~45 ms instead of 2-4 ms (benchmarks/README.md, Outlook section).
    """
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(backlog)
    return sock
