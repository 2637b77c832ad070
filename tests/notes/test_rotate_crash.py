"""``alliance keys rotate`` killed between writing the new master key and committing the re-wrap.

The kill point is made real from outside, with no hook in the code: the test holds the database's
write lock, so the child writes the new version to the key file and then waits on its first
database write; the test sees the key file change and kills it there.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from alliance.keys import Rotation, open_store, rotate_master_key
from alliance.settings import Settings
from core.audit import Actor
from core.crypto import Keyring, MasterKeys, Owner
from core.mirror import ensure_therapist
from core.notes import create_note, get_note
from core.store import Store
from tests.notes.helpers import NotesWorld

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("clean_postgres_url"))


def _settings(home: Path, database_url: str | None) -> Settings:
    # master_key=None: the keys live in the key file, the case where rotate writes a new version.
    return Settings(home=home, master_key=None, timezone="UTC", database_url=database_url, env="development")


def _key_file(home: Path) -> dict[str, Any]:
    return json.loads((home / "master.key").read_text())  # type: ignore[no-any-return]


def _in_use(settings: Settings) -> dict[int, int]:
    store = open_store(settings)
    try:
        with store.session() as session:
            return store.keyring.versions_in_use(session)
    finally:
        store.close()


def _readable(settings: Settings, notes: dict[int, tuple[int, str]], actor: Actor, keys: MasterKeys) -> None:
    """Every note reads back its text in a fresh process-like store holding only ``keys``."""
    store = Store.open(settings.effective_database_url, keyring=Keyring(keys))
    try:
        for note_id, (sid, body) in notes.items():
            assert get_note(store, actor, sid, note_id).text == body
    finally:
        store.close()


@contextmanager
def _writes_blocked(settings: Settings) -> Iterator[None]:
    """Hold the database's write lock: readers go on, the first write of another process waits."""
    if settings.database_url is None:
        lite = sqlite3.connect(settings.home / "alliance.db", isolation_level=None)
        lite.execute("BEGIN IMMEDIATE")
        try:
            yield
        finally:
            lite.execute("ROLLBACK")
            lite.close()
        return
    engine = create_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            # EXCLUSIVE lets plain SELECTs through but blocks any INSERT/UPDATE on the keyring tables.
            conn.execute(text("LOCK TABLE master_key_checks, data_keys IN EXCLUSIVE MODE"))
            yield
            conn.rollback()
    finally:
        engine.dispose()


def test_a_rotation_killed_after_writing_the_key_file_is_completed_by_the_next_run(
    tmp_path: Path, database_url: str | None
) -> None:
    home = tmp_path / "home"
    settings = _settings(home, database_url)
    store = open_store(settings)  # creates the key file (version 1)
    ensure_therapist(store, settings.default_therapist_email)
    worlds = [NotesWorld(store, settings.default_therapist_email), NotesWorld(store, "second@alliance.test", "b")]
    by_author: list[dict[int, tuple[int, str]]] = [{}, {}]  # each note is read back by its author
    for w, world in enumerate(worlds):
        for i in range(5):
            sid = world.session(world.client())
            note = create_note(store, world.actor, sid, f"therapist {w} note {i}")
            by_author[w][note.id] = (sid, note.text)
    store.close()
    wrapped = _in_use(settings)
    assert set(wrapped) == {1} and wrapped[1] >= 2  # at least both therapists' keys

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env["ALLIANCE_HOME"] = str(home)
    if database_url is not None:
        env["ALLIANCE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "alliance", "keys", "rotate"]
    with _writes_blocked(settings):
        proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        try:
            for _ in range(1200):  # up to two minutes to start, read the database and write the key file
                if _key_file(home)["active"] == 2 or proc.poll() is not None:
                    break
                time.sleep(0.1)
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert _key_file(home)["active"] == 2
            proc.send_signal(signal.SIGKILL)  # a crash after the key file, before the database commit
        finally:
            proc.kill()
            proc.wait(timeout=60)
            proc.communicate()

    # The crash left version 2 in the key file and nothing wrapped by it; every note still reads.
    assert set(_key_file(home)["keys"]) == {"1", "2"}
    assert _in_use(settings) == wrapped
    file_keys = MasterKeys.load_file(home / "master.key")
    for world, mine in zip(worlds, by_author, strict=True):
        _readable(settings, mine, world.actor, file_keys)

    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "master key version 2 was written by an interrupted rotation" in resumed.stdout
    assert f"re-wrapped {wrapped[1]} data key(s) under master key version 2" in resumed.stdout
    assert set(_key_file(home)["keys"]) == {"1", "2"}, "the unused version is reused, not a third added"
    assert _in_use(settings) == {2: wrapped[1]}
    only_2 = MasterKeys({2: file_keys.keys[2]}, 2, "test")
    for world, mine in zip(worlds, by_author, strict=True):
        _readable(settings, mine, world.actor, only_2)

    # After a completed rotation a run makes a new version, as always.
    again = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "interrupted" not in again.stdout
    assert f"re-wrapped {wrapped[1]} data key(s) under master key version 3" in again.stdout
    assert _key_file(home)["active"] == 3 and _in_use(settings) == {3: wrapped[1]}
    for old in ("1", "2"):
        retired = subprocess.run([*command[:-1], "retire", old], cwd=ROOT, capture_output=True, text=True, env=env)
        assert retired.returncode == 0, retired.stderr
    assert set(_key_file(home)["keys"]) == {"3"}
    for world, mine in zip(worlds, by_author, strict=True):
        _readable(settings, mine, world.actor, MasterKeys.load_file(home / "master.key"))


def test_a_key_wrapped_late_under_the_old_version_does_not_stop_a_new_rotation(tmp_path: Path) -> None:
    """A process still running with the old keys wraps a new therapist's key under version 1 after
    a completed rotation: the next rotate must not take that for an interrupted rotation (the
    operator asked for a new version and gets one), and re-wraps that key too."""
    settings = _settings(tmp_path / "home", None)
    stale = open_store(settings)  # a server started before the rotation: it keeps version 1 only
    with stale.session() as session:  # a therapist's data key, wrapped by master version 1
        stale.keyring.cipher(session, Owner("therapist", ensure_therapist(stale, settings.default_therapist_email)))
    assert rotate_master_key(settings) == Rotation(version=2, moved=1, resumed=False)

    late = ensure_therapist(stale, "late@alliance.test")
    with stale.session() as session:
        stale.keyring.cipher(session, Owner("therapist", late))
    stale.close()
    assert _in_use(settings) == {1: 1, 2: 1}

    assert rotate_master_key(settings) == Rotation(version=3, moved=2, resumed=False)
    assert _in_use(settings) == {3: 2}
