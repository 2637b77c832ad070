"""A raw dump of the database holds no mirrored content and no connection secret in plaintext."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.engine import make_url

from core.mirror import add_connection, ensure_therapist, list_connections, list_occurrences
from core.store import Store
from core.sync import OccurrenceKey, RemoteOccurrence, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider

SECRETS = {
    "title": "Session with Wilhelmina Zwanenburg",
    "description": "Discuss panic attacks and the divorce",
    "location": "Calle Secreta 17, Madrid",
    "attendee": "wilhelmina.zwanenburg@example.org",
    "feed": "https://calendar.example.org/ical/private-9f8e7d6c5b4a/basic.ics",
}


def _raw_dump(store: Store) -> bytes:
    url = store.engine.url
    if url.get_backend_name() == "sqlite":
        store.engine.dispose()  # close connections so the WAL is checkpointed into the file...
        path = Path(url.database or "")
        wal = path.with_name(path.name + "-wal")  # ...and read the WAL too, in case it was not
        return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")
    libpq = make_url(url.render_as_string(hide_password=False)).set(drivername="postgresql")
    result = subprocess.run(
        ["pg_dump", "--data-only", libpq.render_as_string(hide_password=False)],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_a_raw_dump_contains_none_of_the_sensitive_strings(store: Store) -> None:
    therapist = ensure_therapist(store, "therapist@alliance.test")
    calendar = MemoryCalendar()
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(days=1)
    calendar.put(
        RemoteOccurrence(
            key=OccurrenceKey("uid-1@test"),
            start=start,
            end=start + timedelta(minutes=50),
            title=SECRETS["title"],
            description=SECRETS["description"] + " https://meet.google.com/abc-defg-hij",
            location=SECRETS["location"],
            attendees=(SECRETS["attendee"],),
        )
    )
    connection = add_connection(store, therapist, "ics", "work", {"source": SECRETS["feed"]})
    sync_connection(store, connection, MemoryProvider(calendar))

    # The application still reads everything back...
    [occ] = list_occurrences(store)
    assert (occ.title, occ.location, occ.attendees) == (SECRETS["title"], SECRETS["location"], (SECRETS["attendee"],))
    assert occ.video_url == "https://meet.google.com/abc-defg-hij"
    assert list_connections(store)[0].settings == {"source": SECRETS["feed"]}

    # ...but the bytes on disk carry none of it, not even fragments.
    dump = _raw_dump(store)
    assert len(dump) > 1000  # a real dump, not an empty file
    for label, secret in SECRETS.items():
        for fragment in {secret, secret.split()[-1], secret[-12:]}:
            assert fragment.encode() not in dump, f"{label} fragment {fragment!r} found in the raw dump"
    assert b"meet.google.com" not in dump
