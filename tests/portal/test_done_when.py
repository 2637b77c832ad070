"""Issue 3's "Done when", end to end, as an operator and a therapist would do it.

``alliance therapists add`` prints a setup link; ``alliance serve`` runs in its own process on a free
loopback port with a fresh ALLIANCE_HOME and a 1-minute sync interval; the therapist sets a password
through the link and signs in through the HTML form with its CSRF token, exactly as a browser would
(one httpx client keeping the cookies); creates an API token from the session; adds an ICS feed
(served from a stdlib HTTP server on 127.0.0.1 at a secret path) through the API; syncs it; and
reads the occurrences with their titles decrypted. Then neither the SQLite files nor the server's
logs may hold an event title, the feed's secret path or the therapist's e-mail address.

The sync is triggered through ``POST /api/v1/connections/{id}/sync`` rather than waited for: the
first periodic run lands at a random point of its first interval (core.jobs.periodic), so waiting
could take a minute. That the periodic ``sync.all`` job picks up a connection added through the API
is proven separately and deterministically (an injected clock) by
``test_a_connection_added_through_the_api_is_synced_by_the_schedule``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from alliance.jobs import build_registry
from alliance.settings import Settings
from core.crypto import generate_key_text
from core.jobs import InProcessRunner, RetryPolicy
from core.store import Store
from tests.portal.conftest import asgi_client, csrf_from
from tests.portal.feeds import Event, Feed, feed_server, soon

EMAIL = "dr.hanna.oyelaran@example.org"
PASSWORD = "a long and quiet harbour at dawn"
TITLES = ("Therapy with Zacharias Quillfeather", "Intake: Marisol Etxeberria")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env(home: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_") and "proxy" not in k.lower()}
    env.update(
        {
            "ALLIANCE_HOME": str(home),
            "ALLIANCE_MASTER_KEY": generate_key_text(),
            "ALLIANCE_TIMEZONE": "UTC",
            "ALLIANCE_SYNC_INTERVAL_MINUTES": "1",
            "ALLIANCE_ALLOW_PRIVATE_FEEDS": "true",  # the test feed listens on loopback
            "ALLIANCE_BASE_URL": f"http://127.0.0.1:{port}",
        }
    )
    return env


@dataclass
class Outcome:
    occurrences: list[dict[str, object]]
    sync: dict[str, object]
    feed: Feed
    database: bytes
    logs: str


def _wait_ready(client: httpx.Client, process: subprocess.Popen[bytes], attempts: int = 600) -> None:
    """Poll /readyz, bounded by a number of attempts (never a time assertion)."""
    for _ in range(attempts):
        if process.poll() is not None:
            raise AssertionError("alliance serve exited early")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("alliance serve never became ready")


def _sign_up_and_in(client: httpx.Client, setup_link: str) -> str:
    """Set the password through the link, sign in through the form; return the page's CSRF token."""
    setup_path = setup_link.removeprefix(str(client.base_url).rstrip("/"))
    form = client.get(setup_path)
    assert form.status_code == 200
    done = client.post(setup_path, data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": csrf_from(form.text)})
    assert done.status_code == 303 and done.headers["location"] == "/login?setup=done"
    login = client.get(done.headers["location"])
    signed_in = client.post(
        "/login", data={"email": EMAIL, "password": PASSWORD, "csrf_token": csrf_from(login.text), "next": "/"}
    )
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
    home = client.get("/")
    assert home.status_code == 200
    return csrf_from(home.text)


@pytest.fixture(scope="module")
def outcome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Outcome]:
    home = tmp_path_factory.mktemp("done-when") / "home"
    port = _free_port()
    env = _env(home, port)
    added = subprocess.run(
        [sys.executable, "-m", "alliance", "therapists", "add", EMAIL, "--name", "Hanna"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert added.returncode == 0, added.stderr
    link = re.search(r"http://\S+/setup-password/\S+", added.stdout)
    assert link, added.stdout

    log_path = home / "serve.log"
    with feed_server() as feed, log_path.open("wb") as log:
        feed.serve(
            Event("weekly@practice", soon(1, 17), TITLES[0], rrule="FREQ=WEEKLY;COUNT=3"),
            Event("intake@practice", soon(2, 9), TITLES[1]),
        )
        process = subprocess.Popen(
            # --verbose: INFO logs (every request, every sync), the most there is to leak through.
            [sys.executable, "-m", "alliance", "--verbose", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            # trust_env=False: a proxy from the environment must not sit between the test and the server.
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60) as browser:
                _wait_ready(browser, process)
                csrf = _sign_up_and_in(browser, link.group(0))
                # Same-origin script with the session cookie: the CSRF header is what lets it write.
                assert browser.post("/api/v1/tokens", json={"name": "x"}).status_code == 403
                created = browser.post("/api/v1/tokens", json={"name": "done-when"}, headers={"X-CSRF-Token": csrf})
                assert created.status_code == 201
                auth = {"Authorization": f"Bearer {created.json()['token']}"}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", trust_env=False, timeout=60, headers=auth) as api:
                assert api.get("/api/v1/me").json()["email"] == EMAIL
                connection = api.post("/api/v1/connections", json={"provider": "ics", "source": feed.url})
                assert connection.status_code == 201, connection.text
                synced = api.post(f"/api/v1/connections/{connection.json()['id']}/sync")
                assert synced.status_code == 200, synced.text
                window = {"from": soon(0, 0).isoformat(), "to": (soon(0, 0) + timedelta(days=30)).isoformat()}
                occurrences = api.get("/api/v1/occurrences", params=window)
                assert occurrences.status_code == 200
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                raise
    assert process.returncode == 0
    database = b"".join(p.read_bytes() for p in sorted(home.glob("alliance.db*")))
    yield Outcome(occurrences.json(), synced.json(), feed, database, log_path.read_text(errors="replace"))


def test_a_therapist_signs_in_adds_a_feed_and_reads_it_decrypted(outcome: Outcome) -> None:
    assert outcome.sync["created"] == 4 and outcome.feed.requests >= 1
    titles = [o["title"] for o in outcome.occurrences]
    assert titles == [TITLES[0], TITLES[1], TITLES[0], TITLES[0]]
    assert "Traceback" not in outcome.logs


def test_no_title_secret_path_or_email_in_the_logs(outcome: Outcome) -> None:
    assert "POST /api/v1/connections/{connection_id}/sync 200" in outcome.logs  # the log is really there
    for needle in (*TITLES, outcome.feed.secret, EMAIL):
        assert needle not in outcome.logs, needle


def test_no_title_or_secret_path_in_the_database(outcome: Outcome) -> None:
    assert outcome.database.startswith(b"SQLite format 3")
    for needle in (*TITLES, outcome.feed.secret):
        assert needle.encode() not in outcome.database, needle


@pytest.mark.anyio
async def test_a_connection_added_through_the_api_is_synced_by_the_schedule(
    store: Store, settings: Settings, therapist: int
) -> None:
    """With ALLIANCE_SYNC_INTERVAL_MINUTES=1, the periodic job syncs a feed added through the API
    within one interval, with no call to the sync endpoint (clock injected, worst-case first offset)."""
    from alliance.app import create_app
    from core.accounts import create_api_token

    one_minute = settings.model_copy(update={"sync_interval_minutes": 1})
    app = create_app(one_minute, store=store)  # no embedded worker: this test drives the runner itself
    t0 = datetime.now(UTC)
    runner = InProcessRunner(
        store, build_registry(one_minute), policy=RetryPolicy(random=lambda: 0.999), clock=lambda: t0
    )
    auth = {"Authorization": f"Bearer {create_api_token(store, therapist).token}"}
    with feed_server() as feed:
        feed.serve(Event("a@test", soon(1), "Scheduled"))
        async with asgi_client(app) as client:
            created = await client.post(
                "/api/v1/connections", json={"provider": "ics", "source": feed.url}, headers=auth
            )
            assert created.status_code == 201
            runner.run_pending(t0)
            assert feed.requests == 0  # not due yet
            runner.run_pending(t0 + timedelta(seconds=61))
            assert feed.requests == 1
            listed = (await client.get("/api/v1/connections", headers=auth)).json()
            assert listed[0]["last_result"]["created"] == 1 and listed[0]["occurrences"] == 1
            assert [o["title"] for o in (await client.get("/api/v1/occurrences", headers=auth)).json()] == ["Scheduled"]
