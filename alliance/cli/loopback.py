"""A one-shot HTTP listener on 127.0.0.1 that receives an OAuth redirect (desktop sign-ins).

The identity provider redirects the browser to ``http://127.0.0.1:<port>/?code=...&state=...``;
the listener answers with a short page and hands the parameters to the caller. Requests without
OAuth parameters (a browser's favicon) get 404. Nothing is logged: the query holds the code.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

_DONE_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Alliance</title>"
    b"<p>Alliance received the sign-in answer. You can close this tab and return to the terminal.</p>"
)


class _Server(HTTPServer):
    answer: dict[str, str] | None = None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        params = dict(parse_qsl(urlsplit(self.path).query))
        if not ({"code", "error", "state"} & set(params)):
            self.send_error(404)
            return
        self.server.answer = params
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(_DONE_PAGE)))
        self.end_headers()
        self.wfile.write(_DONE_PAGE)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the query holds the authorization code: it must not reach the terminal or a log


class LoopbackListener:
    """Bind on a free loopback port; :meth:`wait` returns the redirect's parameters or None on timeout."""

    def __init__(self) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.timeout = 0.5  # handle_request() returns this often to check the deadline

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def wait(self, timeout: float, clock: Callable[[], float] = time.monotonic) -> dict[str, str] | None:
        deadline = clock() + timeout
        while self._server.answer is None and clock() < deadline:
            self._server.handle_request()
        return self._server.answer

    def close(self) -> None:
        self._server.server_close()

    def __enter__(self) -> LoopbackListener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["LoopbackListener"]
