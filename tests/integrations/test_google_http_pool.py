"""Kept-alive connections to Google shared by syncs (integrations.google.http_pool).

Against the Google emulator (its request log names each request's peer address, so requests sent
on one connection share it) and against a small HTTP/1.1 server of the standard library that can
drop a kept-alive connection the way servers do, answer slowly, and say which connection each
request came on.
"""

from __future__ import annotations

import multiprocessing
import socket
import struct
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from core.mirror import add_connection, ensure_therapist
from core.store import Store
from core.sync import sync_connection
from integrations.google.http_pool import HttpPool, shared_pool
from tests.integrations.google_world import GoogleWorld, at, timed
from tests.integrations.local_http import serving


def test_syncs_of_two_calendars_share_one_connection_to_google(google: GoogleWorld, sqlite_store: Store) -> None:
    google.seed({"summary": "Session", **timed(at(2))})
    therapist = ensure_therapist(sqlite_store, "ana@example.org")
    first = add_connection(sqlite_store, therapist, "google", "one", {})
    second = add_connection(sqlite_store, therapist, "google", "two", {})
    shared_pool(10.0).close()  # what earlier tests left: the server may have closed it meanwhile
    google.state.clear_request_log()

    for connection in (first, second, first, second):  # a new provider each time, as every sync builds
        sync_connection(sqlite_store, connection, google.provider(timeout=10.0))

    sent = google.list_requests()
    assert len(sent) == 4
    assert len({r["client"] for r in sent}) == 1, "every sync opened its own connection"


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.answered: list[tuple[str, int]] = []  # (method, peer port) of each request answered
        self.drop_next_on: set[int] = set()  # peer ports whose next request is reset unanswered
        self.reset: set[socket.socket] = set()
        self.slow_seconds = 0.0

    def shutdown_request(self, request: Any) -> None:
        if request in self.reset:
            self.reset.discard(request)
            request.close()  # a reset alone (SO_LINGER 0), without the orderly shutdown's FIN first
            return
        super().shutdown_request(request)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive unless told otherwise
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        port = self.client_address[1]
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if port in self.server.drop_next_on:
            # What a server that timed the connection out does: no answer, the connection reset.
            self.server.drop_next_on.discard(port)
            self.server.reset.add(self.connection)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            return
        if self.server.slow_seconds:
            time.sleep(self.server.slow_seconds)
        self.server.answered.append((self.command, port))  # before the client can read the answer
        body = str(port).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer


@pytest.fixture
def server() -> Iterator[_Server]:
    with serving(_Server()) as srv:
        yield srv


def _port(pool: HttpPool, url: str, method: str = "GET") -> int:
    response, body = pool.request(url, method, body=b"x" if method == "POST" else None)
    assert response.status == 200
    return int(body)


def test_requests_one_after_another_share_a_connection(server: _Server) -> None:
    pool = HttpPool(5.0)
    ports = {_port(pool, server.url) for _ in range(5)}
    assert len(ports) == 1


def test_a_get_on_a_connection_the_server_dropped_is_sent_again_on_a_new_one_at_once(server: _Server) -> None:
    pool = HttpPool(5.0)
    first = _port(pool, server.url)
    server.drop_next_on.add(first)

    started = time.monotonic()
    again = _port(pool, server.url)

    assert again != first
    assert server.answered == [("GET", first), ("GET", again)]
    assert time.monotonic() - started < 2.0  # not after a retry backoff (the client's starts at 1 s)


def test_a_post_on_a_dropped_connection_is_not_sent_twice(server: _Server) -> None:
    pool = HttpPool(5.0)
    first = _port(pool, server.url, "POST")
    server.drop_next_on.add(first)

    with pytest.raises(ConnectionResetError):
        pool.request(server.url, "POST", body=b"x")

    assert server.answered == [("POST", first)]  # the client's retry policy decides what follows
    assert _port(pool, server.url) != first  # the broken connection was not kept


def test_a_connection_that_timed_out_is_not_reused(server: _Server) -> None:
    pool = HttpPool(0.3)
    first = _port(pool, server.url)
    server.slow_seconds = 1.0
    with pytest.raises(TimeoutError):
        pool.request(server.url)
    server.slow_seconds = 0.0
    # The late answer of the timed-out request must not be read as the next one's.
    after = _port(pool, server.url)
    assert after != first


def test_a_connection_idle_for_too_long_is_closed_not_reused(server: _Server) -> None:
    now = [1000.0]
    pool = HttpPool(5.0, idle_seconds=60.0, clock=lambda: now[0])
    first = _port(pool, server.url)
    now[0] += 30
    assert _port(pool, server.url) == first
    now[0] += 61
    assert _port(pool, server.url) != first


def _child_port(pool: HttpPool, url: str, out: Any) -> None:
    out.send(_port(pool, url))


def test_a_forked_process_opens_its_own_connection(server: _Server) -> None:
    pool = HttpPool(5.0)
    parent = _port(pool, server.url)

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=_child_port, args=(pool, server.url, send))
    child.start()
    child_port = receive.recv()
    child.join(10)

    assert child_port != parent  # never the parent's socket: the two would interleave requests
    assert _port(pool, server.url) == parent  # and the parent's connection is still its own
