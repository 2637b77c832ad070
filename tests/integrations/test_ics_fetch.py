"""Reading feeds the way a therapist's calendar publishes them: files and a real HTTP server.

The server is the stdlib ``ThreadingHTTPServer`` on 127.0.0.1 (port 0): nothing of ours is faked,
the provider talks real HTTP through httpx.
"""

from __future__ import annotations

import logging
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib.resources import files
from pathlib import Path

import pytest

from core.mirror import add_connection, ensure_therapist, list_occurrences
from core.store import Store
from core.sync import SourceError, Status, sync_connection
from integrations.base.protocol import InvalidSettings, ProviderContext
from integrations.ics import IcsProvider

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
SECRET = "s3cr3t-T0KEN-9f8e7d"

FEED = (
    b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Alliance tests//EN\r\n"
    b"BEGIN:VEVENT\r\nUID:weekly@test\r\nDTSTART;TZID=Europe/Madrid:20261006T180000\r\n"
    b"DTEND;TZID=Europe/Madrid:20261006T185000\r\nRRULE:FREQ=WEEKLY;COUNT=10\r\n"
    b"SUMMARY:Session K7Q2\r\nEND:VEVENT\r\n"
    b"BEGIN:VEVENT\r\nUID:single@test\r\nDTSTART:20261201T100000Z\r\nDTEND:20261201T105000Z\r\n"
    b"SUMMARY:Supervision\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


Route = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class FeedServer:
    """Routes by path (query string ignored) and records every request it got."""

    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[Seen] = field(default_factory=list)
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def seen(self, path: str) -> list[Seen]:
        return [r for r in self.requests if r.path == path]


def _send(handler: BaseHTTPRequestHandler, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    if status != 304:
        handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    if status != 304:
        handler.wfile.write(body)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    feeds = FeedServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            feeds.requests.append(Seen(path, {k.lower(): v for k, v in self.headers.items()}))
            route = feeds.routes.get(path)
            if route is None:
                _send(self, 404, b"not found", {"Content-Type": "text/plain"})
            else:
                route(self)

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

    class Server(ThreadingHTTPServer):
        daemon_threads = True

        def handle_error(self, request: object, client_address: object) -> None:
            pass  # a client hanging up mid-body (the size-limit tests) is expected

    httpd = Server(("127.0.0.1", 0), Handler)
    feeds.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield feeds
    finally:
        httpd.shutdown()
        httpd.server_close()


def provider_for(source: str, **settings: object) -> IcsProvider:
    return IcsProvider.from_settings({"source": source, **settings}, ProviderContext(now=NOW))


def list_all(provider: IcsProvider, cursor: str | None = None):
    return list(provider.list_changes(cursor))


def fail_message(provider: IcsProvider) -> str:
    with pytest.raises(SourceError) as caught:
        list_all(provider)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    return message


# --- conditional GET ----------------------------------------------------------------------------


def test_etag_conditional_get_makes_the_second_sync_do_no_work(server: FeedServer) -> None:
    etag = '"v1-abc"'

    def feed(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("If-None-Match") == etag:
            _send(handler, 304, b"", {"ETag": etag})
        else:
            _send(handler, 200, FEED, {"ETag": etag, "Content-Type": "text/calendar; charset=utf-8"})

    server.routes["/feed.ics"] = feed
    provider = provider_for(server.url(f"/feed.ics?token={SECRET}"))
    first = list_all(provider)
    assert sum(len(p.upserts) for p in first) == 11
    assert first[-1].complete and first[-1].next_cursor

    second = list_all(provider, first[-1].next_cursor)
    assert server.seen("/feed.ics")[1].headers.get("if-none-match") == etag
    assert "if-none-match" not in server.seen("/feed.ics")[0].headers
    assert len(second) == 1
    (page,) = second
    assert page.upserts == () and page.removals == ()
    assert (page.is_last, page.complete) == (True, False)
    assert page.next_cursor  # still usable: a third sync is conditional again
    list_all(provider, page.next_cursor)
    assert server.seen("/feed.ics")[2].headers.get("if-none-match") == etag


def test_last_modified_conditional_get(server: FeedServer) -> None:
    stamp = "Wed, 25 Nov 2026 10:00:00 GMT"

    def feed(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("If-Modified-Since") == stamp:
            _send(handler, 304, b"")
        else:
            _send(handler, 200, FEED, {"Last-Modified": stamp, "Content-Type": "text/calendar"})

    server.routes["/feed.ics"] = feed
    provider = provider_for(server.url("/feed.ics"))
    cursor = list_all(provider)[-1].next_cursor
    (page,) = list_all(provider, cursor)
    assert server.seen("/feed.ics")[1].headers.get("if-modified-since") == stamp
    assert page.upserts == () and not page.complete


def test_same_bytes_without_validators_or_with_a_new_etag_do_no_work(server: FeedServer) -> None:
    counter = iter(range(100))
    server.routes["/feed.ics"] = lambda h: _send(h, 200, FEED, {"ETag": f'"bump-{next(counter)}"'})
    provider = provider_for(server.url("/feed.ics"))
    cursor = list_all(provider)[-1].next_cursor
    (page,) = list_all(provider, cursor)  # the server ignored If-None-Match and sent the same bytes
    assert page.upserts == () and not page.complete


def test_a_changed_feed_is_listed_completely_again(server: FeedServer) -> None:
    body = {"bytes": FEED, "etag": '"one"'}

    def feed(handler: BaseHTTPRequestHandler) -> None:
        if handler.headers.get("If-None-Match") == body["etag"]:
            _send(handler, 304, b"")
        else:
            _send(handler, 200, body["bytes"], {"ETag": body["etag"]})

    server.routes["/feed.ics"] = feed
    provider = provider_for(server.url("/feed.ics"))
    cursor = list_all(provider)[-1].next_cursor
    body.update(bytes=FEED.replace(b"Supervision", b"Group supervision"), etag='"two"')
    pages = list_all(provider, cursor)
    assert all(p.complete for p in pages)
    titles = {o.title for p in pages for o in p.upserts}
    assert "Group supervision" in titles


def test_a_feed_that_only_got_new_dtstamps_does_no_work(server: FeedServer) -> None:
    # Google's export stamps every event with the fetch time and never answers 304.
    body = {"bytes": FEED.replace(b"END:VEVENT", b"DTSTAMP:20261126T100000Z\r\nEND:VEVENT")}
    server.routes["/feed.ics"] = lambda h: _send(h, 200, body["bytes"], {"Content-Type": "text/calendar"})
    provider = provider_for(server.url("/feed.ics"))
    cursor = list_all(provider)[-1].next_cursor
    body["bytes"] = body["bytes"].replace(b"DTSTAMP:20261126T100000Z", b"DTSTAMP:20261126T101500Z")
    (page,) = list_all(provider, cursor)
    assert page.upserts == () and not page.complete
    body["bytes"] = body["bytes"].replace(b"SUMMARY:Supervision", b"SUMMARY:Supervision (room 2)")
    pages = list_all(provider, page.next_cursor)
    assert pages[-1].complete
    assert "Supervision (room 2)" in {o.title for p in pages for o in p.upserts}


def test_an_unreadable_cursor_means_a_full_listing(server: FeedServer) -> None:
    server.routes["/feed.ics"] = lambda h: _send(h, 200, FEED, {"ETag": '"x"'})
    provider = provider_for(server.url("/feed.ics"))
    for cursor in ("not json", '{"v": 99}', "[]", '{"v":1,"sha256":1}'):
        pages = list_all(provider, cursor)
        assert all(p.complete for p in pages) and sum(len(p.upserts) for p in pages) == 11
    assert all("if-none-match" not in r.headers for r in server.requests)


def test_a_new_window_day_relists_even_an_unchanged_feed(server: FeedServer) -> None:
    server.routes["/feed.ics"] = lambda h: _send(h, 200, FEED, {"ETag": '"x"'})
    cursor = list_all(provider_for(server.url("/feed.ics")))[-1].next_cursor
    tomorrow = IcsProvider.from_settings({"source": server.url("/feed.ics")}, ProviderContext(now=NOW.replace(day=27)))
    pages = list_all(tomorrow, cursor)
    assert pages[-1].complete and sum(len(p.upserts) for p in pages) == 11
    assert "if-none-match" not in server.requests[-1].headers  # a 304 would leave nothing to list


def test_redirects_are_followed(server: FeedServer) -> None:
    server.routes["/feed.ics"] = lambda h: _send(h, 200, FEED)
    server.routes["/old.ics"] = lambda h: _send(h, 301, b"", {"Location": "/feed.ics"})
    pages = list_all(provider_for(server.url("/old.ics")))
    assert sum(len(p.upserts) for p in pages) == 11


# --- failures: one clear line, never the secret --------------------------------------------------


def test_html_login_page_instead_of_a_feed(server: FeedServer) -> None:
    page = b"<!DOCTYPE html>\n<html><head><title>Sign in</title></head><body>Sign in</body></html>"
    server.routes["/login"] = lambda h: _send(h, 200, page, {"Content-Type": "text/html; charset=utf-8"})
    message = fail_message(provider_for(server.url(f"/login?token={SECRET}")))
    assert "HTML" in message and SECRET not in message


@pytest.mark.parametrize(("status", "text"), [(404, "HTTP 404"), (500, "HTTP 500"), (403, "HTTP 403")])
def test_http_error_status(server: FeedServer, status: int, text: str) -> None:
    server.routes["/feed.ics"] = lambda h: _send(h, status, b"nope", {"Content-Type": "text/plain"})
    message = fail_message(provider_for(server.url(f"/feed.ics?token={SECRET}")))
    assert text in message
    assert f"http://127.0.0.1:{server.port}" in message
    assert SECRET not in message and "feed.ics" not in message


def test_connection_refused_on_a_closed_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    message = fail_message(provider_for(f"http://127.0.0.1:{port}/private-{SECRET}/basic.ics"))
    assert "connection refused" in message
    assert SECRET not in message and "private-" not in message


def test_a_server_that_does_not_answer_times_out(server: FeedServer) -> None:
    release = threading.Event()

    def slow(handler: BaseHTTPRequestHandler) -> None:
        release.wait(5)
        _send(handler, 200, FEED)

    server.routes["/slow.ics"] = slow
    provider = provider_for(server.url(f"/slow.ics?token={SECRET}"))
    provider.timeout = 0.3
    try:
        message = fail_message(provider)
    finally:
        release.set()
    assert "did not answer within 0.3 s" in message and SECRET not in message


def test_feed_over_max_bytes_declared_and_streamed(server: FeedServer) -> None:
    big = FEED.replace(b"SUMMARY:Supervision", b"SUMMARY:" + b"x" * 5000)
    server.routes["/declared.ics"] = lambda h: _send(h, 200, big)

    def streamed(handler: BaseHTTPRequestHandler) -> None:
        # No Content-Length (HTTP/1.0, body ends when the connection closes): only counting the
        # bytes while reading can stop it.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/calendar")
        handler.end_headers()
        handler.wfile.write(big)

    server.routes["/streamed.ics"] = streamed
    for path in ("/declared.ics", "/streamed.ics"):
        message = fail_message(provider_for(server.url(f"{path}?token={SECRET}"), max_bytes=4096))
        assert "larger than the 4 KB limit" in message and SECRET not in message
    assert sum(len(p.upserts) for p in list_all(provider_for(server.url("/declared.ics")))) == 11


def test_default_limit_stops_an_endless_feed_after_50_mb(server: FeedServer) -> None:
    sent = {"bytes": 0}

    def endless(handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/calendar")
        handler.end_headers()
        chunk = b"X-FILLER:" + b"y" * (1024 * 1024 - 11) + b"\r\n"
        handler.wfile.write(b"BEGIN:VCALENDAR\r\n")
        try:
            while sent["bytes"] < 200 * 1024 * 1024:  # a safety stop far past the limit
                handler.wfile.write(chunk)
                sent["bytes"] += len(chunk)
        except OSError:  # the client hung up once past its limit: what we want
            pass

    server.routes["/endless.ics"] = endless
    started = time.monotonic()
    message = fail_message(provider_for(server.url("/endless.ics")))
    assert "larger than the 50 MB limit" in message
    assert time.monotonic() - started < 30
    assert sent["bytes"] < 120 * 1024 * 1024  # the client stopped reading; it did not take it all


def test_malformed_ics(server: FeedServer, tmp_path: Path) -> None:
    bad = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nthis line has no colon and names Jane Doe\r\nEND:VCALENDAR\r\n"
    server.routes["/bad.ics"] = lambda h: _send(h, 200, bad, {"Content-Type": "text/calendar"})
    message = fail_message(provider_for(server.url("/bad.ics")))
    assert message.startswith("not a valid iCalendar feed:")
    assert "Jane" not in message
    path = tmp_path / "notes.ics"
    path.write_bytes(b"Dear diary,\nno calendar here.\n")
    assert fail_message(provider_for(str(path))).startswith("not a valid iCalendar feed:")
    path.write_bytes(b"")
    assert "empty" in fail_message(provider_for(str(path)))


def test_file_over_max_bytes(tmp_path: Path) -> None:
    path = tmp_path / "calendar.ics"
    path.write_bytes(FEED)
    assert fail_message(provider_for(str(path), max_bytes=100)) == (
        f"the calendar feed at {path} is larger than the 100 bytes limit (max_bytes)"
    )
    assert sum(len(p.upserts) for p in list_all(provider_for(str(path), max_bytes=len(FEED)))) == 11


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "calendar.ics"
    path.write_bytes(FEED)
    provider = provider_for(str(path))
    assert sum(len(p.upserts) for p in list_all(provider)) == 11
    path.unlink()
    assert fail_message(provider) == f"the calendar file {path} no longer exists"


def test_nothing_logged_contains_the_secret_or_event_text(server: FeedServer, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    server.routes["/feed.ics"] = lambda h: _send(h, 200, FEED, {"ETag": '"e"'})
    provider = provider_for(server.url(f"/private-{SECRET}/feed.ics?token={SECRET}"))
    server.routes[f"/private-{SECRET}/feed.ics"] = server.routes["/feed.ics"]
    cursor = list_all(provider)[-1].next_cursor
    list_all(provider, cursor)
    with pytest.raises(SourceError):
        list_all(provider_for(server.url(f"/missing?token={SECRET}")))
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert SECRET not in logged
    assert "Session K7Q2" not in logged and "Supervision" not in logged


# --- settings -----------------------------------------------------------------------------------


def test_settings_normalisation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    feed = tmp_path / "feed.ics"
    feed.write_bytes(FEED)
    clean = IcsProvider.normalize_settings({"source": "webcal://calendar.example.org/feed.ics?token=abc"})
    assert clean == {
        "source": "https://calendar.example.org/feed.ics?token=abc",
        "window_past_days": None,  # the app-wide window (ProviderContext) unless set here
        "window_future_days": None,
        "timezone": None,
        "max_bytes": 50 * 1024 * 1024,
    }
    assert (
        IcsProvider.normalize_settings({"source": "WEBCALS://h.example/x.ics"})["source"] == "https://h.example/x.ics"
    )
    assert IcsProvider.normalize_settings({"source": "https://h.example/x.ics"})["source"] == "https://h.example/x.ics"
    monkeypatch.chdir(tmp_path)
    relative = IcsProvider.normalize_settings({"source": "feed.ics"})
    assert relative["source"] == str(feed.resolve())
    assert IcsProvider.normalize_settings({"source": feed.as_uri()})["source"] == str(feed.resolve())
    assert IcsProvider.normalize_settings(
        {"source": str(feed), "timezone": "Europe/Madrid", "window_past_days": 0, "max_bytes": 1000}
    ) == {
        "source": str(feed.resolve()),
        "window_past_days": 0,
        "window_future_days": None,
        "timezone": "Europe/Madrid",
        "max_bytes": 1000,
    }


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({}, "needs a 'source'"),
        ({"source": "ftp://files.example/cal.ics"}, "'ftp://' is not supported"),
        ({"source": "/no/such/calendar.ics"}, "does not exist"),
        ({"source": "__DIR__"}, "is not a file"),
        ({"source": "https:///nohost.ics"}, "has no host"),
        ({"source": "__FILE__", "window_past_days": -1}, "'window_past_days' must be"),
        ({"source": "__FILE__", "window_future_days": "365"}, "'window_future_days' must be"),
        ({"source": "__FILE__", "window_future_days": True}, "'window_future_days' must be"),
        ({"source": "__FILE__", "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"source": "__FILE__", "max_bytes": 0}, "'max_bytes' must be"),
        ({"source": "__FILE__", "window_past_day": 3}, "unknown ICS setting(s) window_past_day"),
    ],
)
def test_invalid_settings_are_refused_with_one_line(tmp_path: Path, raw: dict[str, object], expected: str) -> None:
    feed = tmp_path / "feed.ics"
    feed.write_bytes(FEED)
    raw = {k: (str(feed) if v == "__FILE__" else str(tmp_path) if v == "__DIR__" else v) for k, v in raw.items()}
    with pytest.raises(InvalidSettings) as caught:
        IcsProvider.normalize_settings(raw)
    assert expected in str(caught.value)
    assert "\n" not in str(caught.value)


def test_invalid_url_settings_never_echo_the_secret() -> None:
    for source in (f"gopher://h.example/x?token={SECRET}", f"https://h.example:99999/x?token={SECRET}"):
        with pytest.raises(InvalidSettings) as caught:
            IcsProvider.normalize_settings({"source": source})
        assert SECRET not in str(caught.value)


def test_window_comes_from_the_context_unless_the_connection_sets_it(tmp_path: Path) -> None:
    feed = tmp_path / "feed.ics"
    feed.write_bytes(FEED)
    context = ProviderContext(now=NOW, window_past=timedelta(days=7), window_future=timedelta(days=30))
    app_wide = IcsProvider.from_settings(IcsProvider.normalize_settings({"source": str(feed)}), context)
    assert app_wide.window == (NOW - timedelta(days=7), NOW + timedelta(days=30))
    own = IcsProvider.from_settings({"source": str(feed), "window_past_days": 1, "window_future_days": 6}, context)
    assert own.window == (NOW - timedelta(days=1), NOW + timedelta(days=6))
    # Only what falls in those 7 days: the single event and one weekly instance, both on 1 Dec.
    assert sorted(o.start for p in own.list_changes(None) for o in p.upserts) == [
        datetime(2026, 12, 1, 10, 0, tzinfo=UTC),
        datetime(2026, 12, 1, 17, 0, tzinfo=UTC),
    ]


# --- paging ---------------------------------------------------------------------------------------


def test_large_feeds_come_in_pages_of_at_most_1000(tmp_path: Path) -> None:
    path = tmp_path / "busy.ics"
    events = "".join(
        f"BEGIN:VEVENT\r\nUID:daily-{n}@test\r\nDTSTART:20261001T{8 + n:02d}0000Z\r\nDURATION:PT50M\r\n"
        "RRULE:FREQ=DAILY;COUNT=300\r\nEND:VEVENT\r\n"
        for n in range(8)
    )
    path.write_text(f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\n{events}END:VCALENDAR\r\n")
    provider = provider_for(str(path))
    pages = list_all(provider)
    assert [len(p.upserts) for p in pages] == [1000, 1000, 400]
    assert [p.next_cursor is not None for p in pages] == [False, False, True]
    assert [p.is_last for p in pages] == [False, False, True]
    assert all(p.complete and p.total_hint == 2400 and p.window == provider.window for p in pages)
    assert provider.window == (datetime(2026, 9, 27, 12, tzinfo=UTC), datetime(2027, 11, 26, 12, tzinfo=UTC))


# --- the demo calendar, synced end to end -------------------------------------------------------


def test_demo_calendar_full_sync_then_nothing_to_do(store: Store) -> None:
    demo = files("alliance").joinpath("demo/therapist.ics")
    settings = IcsProvider.normalize_settings({"source": str(demo)})
    therapist = ensure_therapist(store, "demo@alliance.example", timezone="Europe/Madrid")
    connection = add_connection(store, therapist, "ics", "demo", settings)

    def provider() -> IcsProvider:
        return IcsProvider.from_settings(settings, ProviderContext(now=NOW, default_timezone="Europe/Madrid"))

    first = sync_connection(store, connection, provider())
    everything = {(o.uid, o.recurrence_id): o for o in list_occurrences(store, include_cancelled=True)}
    assert first.created == len([o for o in everything.values() if o.status is not Status.CANCELLED]) > 100
    assert first.cancelled == 1  # first seen already cancelled: recorded, not announced

    moved = everything[("r5t1series0demo@google.com", "2026-12-02T15:00:00+00:00")]
    assert (moved.start, moved.end) == (
        datetime(2026, 12, 3, 16, 30, tzinfo=UTC),
        datetime(2026, 12, 3, 17, 20, tzinfo=UTC),
    )
    assert moved.video_url and moved.video_url.startswith("https://teams.microsoft.com/l/meetup-join/")
    cancelled = everything[("b9x4series0demo@google.com", "2026-12-10T08:00:00+00:00")]
    assert cancelled.status is Status.CANCELLED
    assert ("7kq2series0demo@google.com", "2026-12-08T17:00:00+00:00") not in everything  # EXDATE
    # 18:00 Madrid on both sides of the 25 October change.
    assert everything[("7kq2series0demo@google.com", "2026-10-20T16:00:00+00:00")].timezone == "Europe/Madrid"
    assert ("7kq2series0demo@google.com", "2026-10-27T17:00:00+00:00") in everything
    assert everything[("7kq2series0demo@google.com", "2026-12-01T17:00:00+00:00")].video_url == (
        "https://meet.google.com/kqa-bcde-fgh"
    )
    assert everything[("m3p8series0demo@google.com", "2026-11-30T09:00:00+00:00")].video_url == (
        "https://us02web.zoom.us/j/81234567890?pwd=QWxsaWFuY2VEZW1v"
    )
    holiday = everything[("holiday1208demo@google.com", "")]
    assert holiday.all_day and holiday.start == datetime(2026, 12, 8, tzinfo=UTC)
    # A sample calendar names no client: sessions carry codes only.
    sessions = {o.title for o in everything.values() if o.title.startswith(("Session", "Intake"))}
    assert sessions and all(re.fullmatch(r"(Session|Intake call) [A-Z0-9]{4}", t) for t in sessions)

    again = sync_connection(store, connection, provider())
    assert again.changes == 0
    assert (again.pages, again.unchanged) == (1, 0)


def test_demo_calendar_has_sessions_around_now_in_a_real_window() -> None:
    demo = files("alliance").joinpath("demo/therapist.ics")
    provider = IcsProvider.from_settings({"source": str(demo)}, ProviderContext())
    found = [o for p in provider.list_changes(None) for o in p.upserts]
    now = datetime.now(UTC)
    assert any(abs(o.start - now).days <= 7 for o in found)
