"""Property: whatever happens to the calendar and the keys, every note stays readable by its author,
attached to its session; erasing a client makes exactly that client's notes unreadable.

A state machine drives random writes (one by one and imported in batches), new versions,
reschedules, provider id changes, re-syncs, master key rotations, data key re-encryptions (some
crashing half way), retirement of superseded keys and erasures against a model of what each note
must read; the audit chain stays intact throughout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import text

from core.audit import verify
from core.crypto import Keyring, MasterKeys
from core.notes import (
    ClientErased,
    InvalidImport,
    NewNote,
    add_version,
    create_note,
    erase_client,
    get_note,
    import_notes,
    list_notes,
    reencrypt_clients,
    retire_superseded_keys,
)
from core.store import Store
from core.store.schema import metadata
from core.sync import OccurrenceKey
from tests.conftest import TEST_MASTER_KEY
from tests.core.test_clients import _occ
from tests.notes.helpers import MONDAY, NotesWorld

TEXT = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40).filter(str.strip)


class Crash(Exception):
    """A simulated crash inside a re-encryption run."""


@dataclass
class ModelNote:
    session_id: int
    client: int  # index into the machine's clients
    versions: list[str] = field(default_factory=list)


def _reset(store: Store) -> None:
    with store.engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        else:
            for t in reversed(metadata.sorted_tables):
                conn.execute(t.delete())


class NotesMachine(RuleBasedStateMachine):
    def __init__(self, store: Store) -> None:
        super().__init__()
        _reset(store)
        self.master = MasterKeys.from_env_value(TEST_MASTER_KEY)
        self.store = Store(store.engine, keyring=Keyring(self.master))
        self.world = NotesWorld(self.store)
        self.clients = [self.world.client() for _ in range(2)]
        self.erased: set[int] = set()
        self.sessions: list[tuple[int, int, OccurrenceKey]] = []  # (session id, client index, event key)
        self.notes: dict[int, ModelNote] = {}

    def _new_process(self) -> None:
        """Another process: the same database and master keys, empty key caches."""
        self.store = Store(self.store.engine, keyring=Keyring(self.master))
        self.world.store = self.store

    @rule(client=st.integers(0, 1))
    def add_session(self, client: int) -> None:
        if client in self.erased:
            return
        uid = f"event-{len(self.sessions)}@test"
        sid = self.world.session(self.clients[client], uid=uid, start=MONDAY + timedelta(days=len(self.sessions)))
        self.sessions.append((sid, client, OccurrenceKey(uid)))

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), body=TEXT, process=st.booleans())
    def write(self, data: st.DataObject, body: str, process: bool) -> None:
        sid, client, _ = data.draw(st.sampled_from(self.sessions))
        if client in self.erased:
            with pytest.raises(ClientErased):
                create_note(self.store, self.world.actor, sid, body)
            return
        note = create_note(self.store, self.world.actor, sid, body, kind="process" if process else "progress")
        self.notes[note.id] = ModelNote(sid, client, [body])

    @precondition(lambda self: self.notes)
    @rule(data=st.data(), body=TEXT)
    def new_version(self, data: st.DataObject, body: str) -> None:
        note_id = data.draw(st.sampled_from(sorted(self.notes)))
        model = self.notes[note_id]
        if model.client in self.erased:
            return
        add_version(self.store, self.world.actor, model.session_id, note_id, body)
        model.versions.append(body)

    @precondition(lambda self: self.sessions)
    @rule(data=st.data(), days=st.integers(1, 20), new_id=st.booleans())
    def reschedule(self, data: st.DataObject, days: int, new_id: bool) -> None:
        _, _, key = data.draw(st.sampled_from(self.sessions))
        start = MONDAY + timedelta(days=days, hours=3)
        provider_id = f"p-{key.ical_uid}-{days}" if new_id else f"p-{key.ical_uid}"
        self.world.calendar.put(_occ(key, start, provider_id=provider_id))
        self.world.sync()
        self.world.deliver_outbox()

    @rule()
    def resync(self) -> None:
        self.world.calendar.expire_cursors()
        self.world.sync()
        self.world.deliver_outbox()

    @rule()
    def rotate_master_key(self) -> None:
        self.master = self.master.with_new_version()
        with self.store.session() as session:
            Keyring(self.master).rotate(session)
        self._new_process()

    @rule(crash_after=st.one_of(st.none(), st.integers(0, 1)))
    def reencrypt(self, crash_after: int | None) -> None:
        def progress(done: int, _total: int) -> None:
            if crash_after is not None and done > crash_after:
                raise Crash()

        try:
            reencrypt_clients(self.store, self.world.actor, progress=progress)
        except Crash:
            self._new_process()  # the crashed process is gone; a new one resumes later

    @precondition(lambda self: self.sessions)
    @rule(
        data=st.data(),
        bodies=st.lists(st.tuples(TEXT, st.booleans()), min_size=1, max_size=4),
        batch_size=st.integers(1, 3),
    )
    def import_many(self, data: st.DataObject, bodies: list[tuple[str, bool]], batch_size: int) -> None:
        chosen = [data.draw(st.sampled_from(self.sessions)) for _ in bodies]
        items = [
            NewNote(sid, body, "process" if process else "progress")
            for (sid, _, _), (body, process) in zip(chosen, bodies, strict=True)
        ]
        if any(client in self.erased for _, client, _ in chosen):
            with pytest.raises(InvalidImport):
                import_notes(self.store, self.world.actor, items, batch_size=batch_size)
            return  # nothing written: the invariant checks every session's notes
        for note, (_, client, _), (body, _) in zip(
            import_notes(self.store, self.world.actor, items, batch_size=batch_size), chosen, bodies, strict=True
        ):
            self.notes[note.id] = ModelNote(note.session_id, client, [body])

    @rule()
    def retire_keys(self) -> None:
        # As if the grace had passed: only keys nothing is sealed under may go.
        retire_superseded_keys(self.store, self.world.actor, now=datetime.now(UTC) + timedelta(hours=2))

    @precondition(lambda self: len(self.erased) < 2)
    @rule(client=st.integers(0, 1))
    def erase(self, client: int) -> None:
        erase_client(self.store, self.world.actor, self.clients[client].code)
        self.erased.add(client)

    @invariant()
    def the_audit_chain_is_intact(self) -> None:
        with self.store.session() as session:
            assert verify(session)[1] == []

    @invariant()
    def every_note_reads_as_written_on_its_session(self) -> None:
        reader = Store(self.store.engine, keyring=Keyring(self.master))
        by_session: dict[int, set[int]] = {}
        for note_id, model in self.notes.items():
            if model.client in self.erased:
                with pytest.raises(ClientErased):
                    get_note(reader, self.world.actor, model.session_id, note_id)
                continue
            view = get_note(reader, self.world.actor, model.session_id, note_id)
            assert view.session_id == model.session_id
            assert [v.text for v in view.history] == model.versions
            by_session.setdefault(model.session_id, set()).add(note_id)
        for sid, client, _ in self.sessions:
            if client in self.erased:
                continue
            assert {n.id for n in list_notes(reader, self.world.actor, sid)} == by_session.get(sid, set())


def test_notes_survive_calendar_changes_key_changes_and_crashes(store: Store) -> None:
    run_state_machine_as_test(
        lambda: NotesMachine(store),
        settings=settings(
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
