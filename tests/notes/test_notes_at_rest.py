"""A raw dump of the database (SQLite file + WAL, pg_dump) holds no note text, reason or client detail."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from core.audit import AuditEntry
from core.notes import ClientErased, add_version, create_note, erase_client, export_client, list_notes
from core.store import Store
from tests.core.test_privacy_at_rest import _raw_dump
from tests.notes.helpers import NotesWorld

SECRETS = {
    "progress": "Discussed the custody hearing with Marguerite Oyelaran-Vasquez",
    "version": "Panic attacks on the Hollenbeck viaduct have lessened",
    "process": "Countertransference: reminded of my own grandmother Ilsabet",
    "reason": "Subpoena 77-QX-9031 from the Cantonal court",
    "name": "Theodora Kwiatkowska-Brennan",
    "email": "theodora.kb@example.org",
}


def test_no_note_text_reason_or_detail_reaches_the_disk(store: Store) -> None:
    world = NotesWorld(store)
    client = world.client(name=SECRETS["name"], email=SECRETS["email"])
    sid = world.session(client)
    note = create_note(store, world.actor, sid, SECRETS["progress"])
    add_version(store, world.actor, sid, note.id, SECRETS["version"])
    create_note(store, world.actor, sid, SECRETS["process"], kind="process")
    export_client(store, world.actor, client.code, include_process_notes=True, reason=SECRETS["reason"])

    # The application reads it all back...
    assert {n.text for n in list_notes(store, world.actor, sid)} == {SECRETS["version"], SECRETS["process"]}
    with store.session() as session:
        assert session.scalar(select(AuditEntry.id).limit(1)) is not None  # the audit log has rows

    # ...the bytes on disk carry none of it, not even fragments.
    dump = _raw_dump(store)
    assert len(dump) > 1000
    for label, secret in SECRETS.items():
        for fragment in {secret, secret.split()[-1], secret[-12:]}:
            assert fragment.encode() not in dump, f"{label} fragment {fragment!r} found in the raw dump"


def test_no_note_text_reaches_the_log(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    world = NotesWorld(store)
    client = world.client(name=SECRETS["name"])
    sid = world.session(client)
    note = create_note(store, world.actor, sid, SECRETS["progress"])
    add_version(store, world.actor, sid, note.id, SECRETS["version"])
    list_notes(store, world.actor, sid)
    export_client(store, world.actor, client.code, include_process_notes=True, reason=SECRETS["reason"])
    erase_client(store, world.actor, client.code)
    with pytest.raises(ClientErased):
        list_notes(store, world.actor, sid)
    assert "note" in caplog.text  # the operations did log
    for label in ("progress", "version", "reason", "name"):
        assert SECRETS[label] not in caplog.text, label
