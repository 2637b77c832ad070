"""``alliance keys reencrypt``: new client data keys, payloads re-encrypted, resumable after a crash."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alliance.keys import open_store
from alliance.settings import Settings
from core.clients import get_client
from core.crypto import KeyDestroyed, Owner
from core.crypto.models import DataKey
from core.mirror import ensure_therapist
from core.notes import (
    KeyReencryptRun,
    NoteVersion,
    create_note,
    erase_client,
    get_note,
    list_notes,
    reencrypt_clients,
)
from core.store import Store
from tests.conftest import TEST_MASTER_KEY, test_keyring
from tests.notes.helpers import NotesWorld


def _kids(store: Store) -> set[bytes]:
    """The key ids every note version's ciphertext names."""
    with store.session() as session:
        return {bytes(b[1:17]) for b in session.scalars(select(NoteVersion.body))}


def _current_kids(store: Store) -> set[bytes]:
    with store.session() as session:
        return {
            bytes.fromhex(k)
            for k in session.scalars(
                select(DataKey.kid).where(DataKey.owner_kind == "client", DataKey.superseded_at.is_(None))
            )
        }


def test_reencrypt_moves_every_payload_to_a_new_key_and_keeps_it_readable(store: Store) -> None:
    world = NotesWorld(store)
    clients = [world.client(name=f"Person {i}") for i in range(3)]
    sessions = [world.session(c) for c in clients]
    notes = [create_note(store, world.actor, sid, f"note for {i}") for i, sid in enumerate(sessions)]
    old_kids = _kids(store)

    result = reencrypt_clients(store, world.actor)
    assert (result.clients, result.resumed, result.payloads) == (3, False, 6)  # 3 notes + 3 detail records
    assert not _kids(store) & old_kids and _kids(store) <= _current_kids(store)
    fresh = Store(store.engine, keyring=test_keyring())  # another process, empty caches
    for i, (sid, note) in enumerate(zip(sessions, notes, strict=True)):
        assert get_note(fresh, world.actor, sid, note.id).text == f"note for {i}"
        assert get_client(fresh, world.therapist, clients[i].code, reveal=True).details.name == f"Person {i}"  # type: ignore[union-attr]
    # Writing after the re-key uses the new key; a second run re-keys again (a new run).
    create_note(fresh, world.actor, sessions[0], "after")
    assert reencrypt_clients(fresh, world.actor).clients == 3
    assert [n.text for n in list_notes(store, world.actor, sessions[0])] == ["note for 0", "after"]


def test_erasure_after_reencrypt_destroys_old_and_new_keys(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client()
    sid = world.session(client)
    create_note(store, world.actor, sid, "text")
    reencrypt_clients(store, world.actor)
    erase_client(store, world.actor, client.code)
    with store.session() as session:
        live = session.scalar(
            select(func.count()).where(
                DataKey.owner_kind == "client", DataKey.owner_id == client.id, DataKey.wrapped.is_not(None)
            )
        )
    assert live == 0
    with pytest.raises(KeyDestroyed), store.session() as session:
        test_keyring().cipher(session, Owner("client", client.id))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str | None:
    return None if request.param == "sqlite" else str(request.getfixturevalue("clean_postgres_url"))


def test_a_killed_reencrypt_resumes_and_loses_no_note(tmp_path: Path, database_url: str | None) -> None:
    home = tmp_path / "home"
    settings = Settings(
        home=home,
        master_key=TEST_MASTER_KEY,  # type: ignore[arg-type]
        timezone="UTC",
        database_url=database_url,
    )
    store = open_store(settings)
    ensure_therapist(store, settings.default_therapist_email)
    world = NotesWorld(store, settings.default_therapist_email)
    expected: dict[int, tuple[int, str]] = {}
    for i in range(60):
        sid = world.session(world.client())
        note = create_note(store, world.actor, sid, f"note {i} " + "x" * 200)
        expected[note.id] = (sid, note.text)
    store.close()

    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_HOME": str(home), "ALLIANCE_MASTER_KEY": TEST_MASTER_KEY})
    if database_url is not None:
        env["ALLIANCE_DATABASE_URL"] = database_url
    command = [sys.executable, "-m", "alliance", "keys", "reencrypt"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert "re-encrypted client 1/60" in first, first + (proc.stderr.read() if proc.stderr else "")
    proc.send_signal(signal.SIGKILL)  # a crash: no cleanup, no rollback handler, mid-run
    proc.wait(timeout=60)
    proc.stdout.close()
    if proc.stderr:
        proc.stderr.close()

    store = open_store(settings)
    with store.session() as session:
        [run] = session.scalars(select(KeyReencryptRun)).all()
        half_way = run.finished_at is None and 1 <= run.clients_done < 60
    assert half_way, "the run should have been killed before it finished"
    reader = Store(store.engine, keyring=test_keyring())
    for note_id, (sid, text) in expected.items():  # everything readable mid-way: old or new key
        assert get_note(reader, world.actor, sid, note_id).text == text
    store.close()

    resumed = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed run" in resumed.stdout and "60 client(s) re-keyed in total" in resumed.stdout

    store = open_store(settings)
    reader = Store(store.engine, keyring=test_keyring())
    for note_id, (sid, text) in expected.items():
        assert get_note(reader, world.actor, sid, note_id).text == text
    with store.session() as session:
        run = session.scalars(select(KeyReencryptRun)).one()
        assert run.finished_at is not None and run.clients_done == 60
    assert _kids(store) <= _current_kids(store) and len(_current_kids(store)) == 60
    store.close()
