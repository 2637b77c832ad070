"""Fixtures for the emulator tests: a running emulator, the REAL Calendar client, a push receiver."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import google_auth_httplib2
import httplib2
import pytest
from google.oauth2.credentials import Credentials
from googleapiclient.discovery import build

from sandbox.google import (
    CALENDAR_SCOPE,
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    GoogleState,
    RunningEmulator,
    run_google_emulator,
)

MADRID = "Europe/Madrid"


@pytest.fixture
def emulator() -> Iterator[RunningEmulator]:
    with run_google_emulator(GoogleState(time_zone=MADRID, seed=7)) as emu:
        yield emu


def make_credentials(emu: RunningEmulator, tokens: dict[str, Any] | None = None) -> Credentials:
    tokens = tokens or emu.state.issue_tokens()
    return Credentials(
        token=tokens["access_token"],
        refresh_token=tokens.get("refresh_token"),
        token_uri=emu.token_uri,
        client_id=DEFAULT_CLIENT_ID,
        client_secret=DEFAULT_CLIENT_SECRET,
        scopes=[CALENDAR_SCOPE],
    )


def make_service(emu: RunningEmulator, credentials: Credentials | None = None, *, timeout: float | None = None) -> Any:
    """``build("calendar", "v3")`` exactly as production code would, aimed at the emulator."""
    credentials = credentials or make_credentials(emu)
    options = {"api_endpoint": emu.api_endpoint}
    if timeout is None:
        return build("calendar", "v3", credentials=credentials, client_options=options, static_discovery=True)
    http = google_auth_httplib2.AuthorizedHttp(credentials, http=httplib2.Http(timeout=timeout))
    return build("calendar", "v3", http=http, client_options=options, static_discovery=True)


@pytest.fixture
def service(emulator: RunningEmulator) -> Any:
    return make_service(emulator)


def list_all(service: Any, **params: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Every page of an events.list; returns (items, pages)."""
    pages = []
    items: list[dict[str, Any]] = []
    token = None
    while True:
        page = service.events().list(calendarId="primary", pageToken=token, **params).execute()
        pages.append(page)
        items.extend(page["items"])
        token = page.get("nextPageToken")
        if not token:
            return items, pages


def timed(start: str, end: str, tz: str = MADRID) -> dict[str, Any]:
    return {"start": {"dateTime": start, "timeZone": tz}, "end": {"dateTime": end, "timeZone": tz}}


@dataclass
class Ping:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that records Google push pings."""

    url: str
    pings: queue.Queue[Ping] = field(default_factory=queue.Queue)
    status: int = 200

    def next(self, timeout: float = 10.0) -> Ping:
        return self.pings.get(timeout=timeout)

    def drain(self, count: int, timeout: float = 10.0) -> list[Ping]:
        return [self.next(timeout) for _ in range(count)]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    holder: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            rec = holder["receiver"]
            rec.pings.put(Ping("POST", self.path, {k: v for k, v in self.headers.items()}, body))
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder["receiver"] = Receiver(url=f"http://127.0.0.1:{server.server_address[1]}/hooks/google")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder["receiver"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def error_reason(exc: Any) -> str:
    import json

    return str(json.loads(exc.content)["error"]["errors"][0]["reason"])
