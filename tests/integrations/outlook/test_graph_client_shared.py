"""The process's shared Graph client (integrations.outlook.transport.shared_client) against a real
HTTP server of the standard library: kept-alive connections, and nothing of one request for the next."""

from __future__ import annotations

from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from integrations.outlook.transport import shared_client
from tests.integrations.local_http import serving


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.server.seen.append((self.client_address[1], self.headers.get("Cookie")))  # type: ignore[attr-defined]
        self.send_response(200)
        # What a load balancer in front of Graph may set on an answer to one mailbox's request.
        self.send_header("Set-Cookie", "affinity=mailbox-a; Path=/")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")


@pytest.fixture
def server() -> Iterator[ThreadingHTTPServer]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    srv.daemon_threads = True
    srv.seen = []  # type: ignore[attr-defined]
    with serving(srv):
        yield srv


def test_requests_share_a_kept_alive_connection_and_carry_no_cookie_of_an_earlier_answer(
    server: ThreadingHTTPServer,
) -> None:
    url = f"http://127.0.0.1:{server.server_address[1]}/v1.0/me/events"
    client = shared_client(None, 7.5)
    for _ in range(3):
        assert client.get(url).status_code == 200

    seen = server.seen  # type: ignore[attr-defined]
    assert len({port for port, _ in seen}) == 1
    assert [cookie for _, cookie in seen] == [None, None, None]
    assert shared_client(None, 7.5) is client  # one per process, trust and timeout
