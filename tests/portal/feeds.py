"""A calendar feed on a real loopback HTTP server (stdlib ``ThreadingHTTPServer``), and ICS text to serve.

The feed lives at a secret path, as Google's and Outlook's private addresses do, so tests can
check that the secret never comes back in an answer, a log line or the database.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Event:
    uid: str
    start: datetime
    title: str
    minutes: int = 50
    rrule: str | None = None
    status: str | None = None
    attendees: tuple[str, ...] = ()


@dataclass
class Feed:
    """What the server answers at :attr:`url`; change :attr:`body` (or :attr:`status`) between syncs."""

    port: int = 0
    secret: str = field(default_factory=lambda: "private-" + secrets.token_hex(12))
    body: bytes = b""
    status: int = 200
    requests: int = 0

    @property
    def path(self) -> str:
        return f"/calendar/ical/{self.secret}/basic.ics"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.path}"

    def serve(self, *events: Event) -> None:
        self.body = ics(*events)


def _stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def ics(*events: Event) -> bytes:
    """A minimal but real iCalendar feed with ``events``."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//Alliance tests//EN"]
    for e in events:
        lines += [
            "BEGIN:VEVENT",
            f"UID:{e.uid}",
            f"DTSTAMP:{_stamp(datetime.now(UTC))}",
            f"DTSTART:{_stamp(e.start)}",
            f"DTEND:{_stamp(e.start + timedelta(minutes=e.minutes))}",
            f"SUMMARY:{e.title}",
        ]
        if e.rrule:
            lines.append(f"RRULE:{e.rrule}")
        if e.status:
            lines.append(f"STATUS:{e.status}")
        lines += [f"ATTENDEE:mailto:{a}" for a in e.attendees]
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return ("\r\n".join(lines) + "\r\n").encode()


def soon(days: int, hour: int = 10) -> datetime:
    """``days`` from today at ``hour``:00 UTC (inside every default window)."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today + timedelta(days=days, hours=hour)


@contextmanager
def feed_server() -> Iterator[Feed]:
    """A feed served on 127.0.0.1 (a free port) until the block ends."""
    feed = Feed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            feed.requests += 1
            ok = self.path.split("?")[0] == feed.path
            status = feed.status if ok else 404
            body = feed.body if ok and status == 200 else b"not here"
            self.send_response(status)
            self.send_header("Content-Type", "text/calendar; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # quiet: the secret path would end up in the test output

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    feed.port = int(server.server_address[1])
    thread = threading.Thread(target=server.serve_forever, name="test-feed", daemon=True)
    thread.start()
    try:
        yield feed
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
