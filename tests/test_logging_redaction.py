"""No title, description, location, note, e-mail address, token or secret feed URL reaches a log line."""

from __future__ import annotations

import io
import json
import logging
import secrets
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from alliance.jobs import build_registry
from alliance.logging import RedactionFilter, configure_logging
from alliance.settings import Settings
from core.jobs import Event, InProcessRunner, RetryPolicy
from core.mirror import add_connection, ensure_therapist
from core.redaction import describe_error, format_exception_safely, scrub
from core.store import Store

TITLE = "Therapy Jane Doe Zebrafish"
DESCRIPTION = "Diagnosis F32.1 confidential Quokka"
LOCATION = "Room Marmalade 7"
ATTENDEE = "jane.doe.client@example.org"
ORGANIZER = "dr.who@practice.example"
FEED_SECRET = secrets.token_hex(16)
QUERY_SECRET = "s3cretQueryValue"
USERINFO = "feeduser:hunter2pass"
SENSITIVE = [
    TITLE,
    "Jane Doe",
    "Zebrafish",
    DESCRIPTION,
    "Quokka",
    "F32.1",
    LOCATION,
    "Marmalade",
    ATTENDEE,
    ORGANIZER,
    FEED_SECRET,
    QUERY_SECRET,
    "hunter2pass",
]


def _feed() -> bytes:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(hour=9, minute=0, second=0, microsecond=0)
    fmt = "%Y%m%dT%H%M%SZ"
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART:{(start + timedelta(days=i)).strftime(fmt)}\r\n"
        f"DTEND:{(start + timedelta(days=i, minutes=50)).strftime(fmt)}\r\n"
        f"SUMMARY:{TITLE}\r\nDESCRIPTION:{DESCRIPTION}\r\nLOCATION:{LOCATION}\r\n"
        f"ORGANIZER:mailto:{ORGANIZER}\r\nATTENDEE;CN=Jane Doe:mailto:{ATTENDEE}\r\n"
        f"{extra}END:VEVENT\r\n"
        for i, (uid, extra) in enumerate(
            [
                ("s1@test", ""),
                ("s2@test", "RRULE:FREQ=WEEKLY;COUNT=3\r\n"),
                ("s3@test", ""),  # no UID problems, a weird zone below
            ]
        )
    )
    odd = (
        "BEGIN:VEVENT\r\nUID:odd@test\r\nDTSTAMP:20260101T000000Z\r\n"
        f"DTSTART;TZID=Mars/Olympus:{start:%Y%m%dT%H%M%S}\r\nDURATION:PT50M\r\nSUMMARY:{TITLE}\r\nEND:VEVENT\r\n"
        f"BEGIN:VEVENT\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{start.strftime(fmt)}\r\nDURATION:PT50M\r\n"
        f"SUMMARY:{TITLE}\r\nEND:VEVENT\r\n"
    )
    return (
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Alliance tests//EN\r\n" + events + odd + "END:VCALENDAR\r\n"
    ).encode()


@pytest.fixture
def feed_url() -> Iterator[str]:
    body = _feed()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if FEED_SECRET not in self.path:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/calendar")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        port = httpd.server_address[1]
        yield f"http://{USERINFO}@127.0.0.1:{port}/calendar/private-{FEED_SECRET}/basic.ics?key={QUERY_SECRET}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("httpx", "httpcore")}
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
    root.setLevel(level)
    for n, lvl in levels.items():
        logging.getLogger(n).setLevel(lvl)


def _leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [s for s in SENSITIVE if s.lower() in lowered]


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_a_real_sync_with_handlers_at_debug_logs_nothing_sensitive(
    store: Store,
    tmp_path: Path,
    feed_url: str,
    fmt: str,
    caplog: pytest.LogCaptureFixture,
    restore_logging: None,
) -> None:
    stream = io.StringIO()
    configure_logging(level=logging.DEBUG, fmt=fmt, stream=stream)  # type: ignore[arg-type]
    for name in ("httpx", "httpcore"):  # the worst case: an operator turned everything up
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)

    settings = Settings(home=tmp_path / "home", timezone="Europe/Madrid")
    therapist = ensure_therapist(store, "therapist@localhost", timezone="Europe/Madrid")
    add_connection(store, therapist, "ics", "work", {"source": feed_url})
    registry = build_registry(settings)

    def quoting_handler(store: Store, event: Event) -> None:
        # A foreign library error that quotes the content it choked on.
        raise ValueError(f"cannot provision a meeting for {TITLE!r} with {ATTENDEE} at {feed_url}")

    registry.add_handler("video.provision", "occurrence.created", quoting_handler)
    t0 = datetime.now(UTC)
    runner = InProcessRunner(store, registry, policy=RetryPolicy(max_attempts=2, random=lambda: 0.0))
    runner.run_pending(t0)
    runner.run_pending(t0 + timedelta(minutes=10))  # the periodic sync
    runner.run_pending(t0 + timedelta(minutes=11))  # its events: the handler fails...
    runner.run_pending(t0 + timedelta(hours=2))  # ...and is parked
    # caplog's handler formats records as the code emitted them, before our handler's filter: the
    # code itself logs nothing sensitive, the filter is a second line of defence.
    assert caplog.records and _leaks(caplog.text) == [], caplog.text
    logging.getLogger("test").error("after the run", exc_info=ValueError(f"{TITLE} / {ATTENDEE}"))

    written = stream.getvalue()
    assert "reconciliation: 1 connection sync(s) requested" in written
    assert "video.provision" in written and "ValueError" in written  # the failure itself is visible
    assert len(written.splitlines()) > 5
    if fmt == "json":
        for line in written.splitlines():
            if line.startswith("{"):
                json.loads(line)
    assert _leaks(written) == [], written
    assert "after the run" in written


def _render(record: logging.LogRecord, fmt: str = "text") -> str:
    stream = io.StringIO()
    handler = configure_logging(level=logging.DEBUG, fmt=fmt, stream=stream)  # type: ignore[arg-type]
    try:
        handler.handle(record)
    finally:
        logging.getLogger().removeHandler(handler)
    return stream.getvalue()


def _record(msg: str, *args: object, exc: BaseException | None = None, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("hostile", logging.WARNING, __file__, 1, msg, args or None, None)
    if exc is not None:
        try:
            raise exc
        except BaseException as caught:
            record.exc_info = (type(caught), caught, caught.__traceback__)
    for k, v in extra.items():
        setattr(record, k, v)
    return record


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_filter_scrubs_hostile_records(fmt: str, restore_logging: None) -> None:
    bearer = "ya29.A0ARrdaM8" + secrets.token_urlsafe(32)
    refresh = "1//0g" + secrets.token_urlsafe(40)
    link_token = secrets.token_urlsafe(24)
    hostile = [
        _record("mail from %s about the session", ATTENDEE),
        _record("contact jane.doe.client%40example.org please"),
        _record("calling API with Authorization: Bearer %s", bearer),
        _record("token response %s", {"access_token": bearer, "refresh_token": refresh}),
        _record(
            "GET %s", f"https://{USERINFO}@calendar.example.org/ical/private-{FEED_SECRET}/basic.ics?key={QUERY_SECRET}"
        ),
        _record("client opened /s/%s", link_token),
        _record("password=%s and api_key: %s", "hunter2pass", QUERY_SECRET),
        _record(
            "synced",
            title=TITLE,
            description=DESCRIPTION,
            location=LOCATION,
            attendees=[ATTENDEE],
            note="Jane Doe said",
            email=ORGANIZER,
            token=bearer,
            client_code="Zebrafish",
            details={"summary": TITLE, "who": ATTENDEE},
            connection_id=7,
        ),
        _record("handler failed", exc=ValueError(f"{TITLE} {ATTENDEE}")),
        _record("bad format %s %s", "only one"),
    ]
    out = "".join(_render(r, fmt) for r in hostile)
    leaks = _leaks(out) + [t for t in (bearer, refresh, link_token) if t in out]
    assert leaks == [], out
    # What is not sensitive survives: ids, the host, the exception type, the code location.
    assert "connection_id" in out and "7" in out
    assert "calendar.example.org" in out and "ValueError" in out and "test_logging_redaction.py" in out


def test_the_filter_is_on_the_root_handler_so_every_logger_is_covered(restore_logging: None) -> None:
    stream = io.StringIO()
    handler = configure_logging(level=logging.INFO, stream=stream)
    assert any(isinstance(f, RedactionFilter) for f in handler.filters)
    assert logging.getLogger("httpx").level == logging.WARNING
    logging.getLogger("some.library.deep.down").warning("user %s", ATTENDEE)
    assert ATTENDEE not in stream.getvalue() and "[redacted]" in stream.getvalue()


def test_scrub_keeps_event_ids_and_plain_words() -> None:
    event_id = "6f1c2a9e-0b7d-4e3a-9c55-2f1e8d7c6b5a"
    assert scrub(f"delivery of {event_id} to links.provision failed") == (
        f"delivery of {event_id} to links.provision failed"
    )
    assert scrub("ICS feed at https://calendar.example.org: 3 occurrence(s)") == (
        "ICS feed at https://calendar.example.org: 3 occurrence(s)"
    )


def test_a_link_token_without_a_digit_is_scrubbed_and_lower_case_names_stay() -> None:
    # One client link token in ~230 (secrets.token_urlsafe(24)) has no digit; this one came up in a run.
    assert scrub("client opened /c/KWARtLaw-jdWvnyeHIkCIAnSePTVg-gT") == "client opened /c/[redacted]"
    assert scrub("client opened /c/qazwsxedcrfvtgbyhnujmikolpAzSxD") == "client opened /c/[redacted]"
    assert scrub("job sync_connection_after_the_backoff_ended ran") == "job sync_connection_after_the_backoff_ended ran"


def test_describe_error_keeps_only_our_own_messages() -> None:
    from core.sync import SourceError

    assert describe_error(ValueError(f"bad {TITLE}")) == "ValueError"
    assert describe_error(SourceError("work: the feed answered 404")) == "SourceError: work: the feed answered 404"
    try:
        try:
            raise KeyError(TITLE)
        except KeyError as inner:
            raise SourceError(f"wrapping for {ATTENDEE}") from inner
    except SourceError as outer:
        text = format_exception_safely(outer)
    assert "KeyError" in text and "SourceError" in text and "direct cause" in text
    assert _leaks(text) == []
