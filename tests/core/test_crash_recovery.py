"""A sync killed outright (no cleanup at all) loses nothing, duplicates nothing, and does not wedge."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from sqlalchemy import func, select

from core.mirror import add_connection, ensure_therapist
from core.store import Connection, Occurrence, OccurrenceHistory, OutboxEvent, Store
from core.sync import sync_connection
from integrations.base import MemoryCalendar, MemoryProvider
from tests.conftest import TEST_MASTER_KEY, test_keyring

BUILD_CALENDAR = """
from datetime import UTC, datetime, timedelta
from core.sync import OccurrenceKey, RemoteOccurrence
from integrations.base import MemoryCalendar

def build() -> MemoryCalendar:
    cal = MemoryCalendar()
    base = datetime(2026, 12, 1, 9, tzinfo=UTC)
    for i in range(45):
        start = base + timedelta(hours=i)
        cal.put(RemoteOccurrence(key=OccurrenceKey(f"e{i}@test"), start=start, end=start + timedelta(minutes=50)))
    return cal
"""


def _build() -> MemoryCalendar:
    namespace: dict[str, object] = {}
    exec(BUILD_CALENDAR, namespace)
    return namespace["build"]()  # type: ignore[operator,no-any-return]


def _store_with_connection(tmp_path: Path, sqlite_template: Path) -> tuple[str, Store, int]:
    db = tmp_path / "alliance.db"
    db.write_bytes(sqlite_template.read_bytes())
    url = f"sqlite:///{db}"
    store = Store.open(url, keyring=test_keyring())
    return url, store, add_connection(store, ensure_therapist(store, "t@test"), "memory", "m", {})


def _sync_in_a_child_that_dies(url: str, connection: int, *, page_size: int, dies: str) -> None:
    """Sync in another process that ends itself with ``os._exit`` (no finally block runs) at the
    checkpoint where ``dies`` (a condition on ``name`` and the ``commits`` made so far) holds."""
    child = textwrap.dedent(
        f"""
        import os
        {textwrap.indent(BUILD_CALENDAR, "        ").strip()}
        from core.crypto import Keyring, MasterKeys
        from core.store import Store
        from core.sync import sync_connection
        from integrations.base import MemoryProvider
        commits = 0
        def checkpoint(name):
            global commits
            if name == "after_commit":
                commits += 1
            if {dies}:
                os._exit(9)
        store = Store.open({url!r}, keyring=Keyring(MasterKeys.from_env_value({TEST_MASTER_KEY!r})))
        sync_connection(store, {connection}, MemoryProvider(build(), page_size={page_size}), checkpoint=checkpoint)
        """
    )
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, text=True, timeout=60)
    assert result.returncode == 9, result.stderr


def test_a_killed_sync_is_taken_over_and_converges(tmp_path: Path, sqlite_template: Path) -> None:
    url, store, connection = _store_with_connection(tmp_path, sqlite_template)

    # The child commits two pages of ten, then dies inside the third page's transaction, leaving
    # its lease behind.
    _sync_in_a_child_that_dies(url, connection, page_size=10, dies='name == "before_commit" and commits == 2')

    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Occurrence)) == 20

    report = sync_connection(store, connection, MemoryProvider(_build(), page_size=10))
    # The first full listing never finished, so the rerun lists everything again: the 20 rows
    # the child committed are recognised, the 25 it never committed are created, none twice.
    assert (report.created, report.unchanged) == (25, 20)
    with store.session() as session:
        assert session.scalar(select(func.count()).select_from(Occurrence)) == 45
        assert session.scalar(select(func.count()).select_from(OccurrenceHistory)) == 45
        assert session.scalar(select(func.count()).select_from(OutboxEvent)) == 45
    assert sync_connection(store, connection, MemoryProvider(_build(), page_size=10)).changes == 0
    store.close()


def test_a_sync_killed_right_after_its_last_commit_leaves_no_lease_and_its_outcome_recorded(
    tmp_path: Path, sqlite_template: Path
) -> None:
    url, store, connection = _store_with_connection(tmp_path, sqlite_template)

    # Five pages of nine; the child dies the moment the last one has committed, before anything
    # else of the sync runs.
    _sync_in_a_child_that_dies(url, connection, page_size=9, dies='name == "after_commit" and commits == 5')

    with store.session() as session:
        row = session.get_one(Connection, connection)
        # Another machine's worker could not tell that the holder is dead: a lease left behind
        # would hold every sync of this calendar off until it expired (LEASE_TTL).
        assert row.lock_owner is None and row.lock_expires_at is None
        assert row.health == "ok" and row.last_success_at is not None and row.cursor
        assert row.last_result is not None
        assert (row.last_result["created"], row.last_result["pages"]) == (45, 5)
    assert sync_connection(store, connection, MemoryProvider(_build(), page_size=9)).changes == 0
    store.close()
