"""Session notes: write 10,000 notes and read back the 100 notes of one client, against raw AES-GCM.

    python -m benchmarks.notes [--notes 10000] [--clients 100] [--reads 30] [--postgres ADMIN_URL]

Floors, measured in the same run:
- **no store** (the issue's floor): ``cryptography``'s AESGCM sealing the same texts with a fresh
  nonce and the same associated data, and opening the 100 ciphertexts of one client, in memory;
- **same I/O** (informational): the same AESGCM plus one bare ``INSERT`` and ``COMMIT`` per note
  through the database driver (sqlite3, or psycopg for PostgreSQL), and one bare ``SELECT`` of the
  client's 100 ciphertexts before opening them; what any store must pay at least.

Alliance does per note: session lookup scoped to the therapist, a client-key check, the note and
version rows, the ciphertext bound to therapist/client/session/note/version, and a hash-chained
audit entry — all in one transaction. Reading 100 notes: one query for the notes, one for the
current versions, the erasure check, one audit entry, 100 decryptions.

Targets (issue 8): list-and-decrypt of 100 notes <= 50 ms median; write throughput >= 0.5x floor.
"""

from __future__ import annotations

import argparse
import os
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.audit import Actor
from core.clients import assign_occurrence, create_client, find_occurrence
from core.crypto import Keyring, MasterKeys, generate_key_text
from core.mirror import add_connection, ensure_therapist
from core.notes import NewNote, create_note, import_notes, list_client_notes
from core.store import Store
from core.sync import OccurrenceKey, RemoteOccurrence, sync_connection
from integrations.base import MemoryCalendar, MemoryProvider

WORDS = [
    "sleep",
    "mood",
    "anxiety",
    "week",
    "work",
    "family",
    "homework",
    "exposure",
    "avoidance",
    "progress",
    "plan",
    "goals",
    "session",
    "discussed",
    "reported",
    "improved",
    "worse",
    "stable",
    "breathing",
    "journal",
    "thoughts",
    "feelings",
    "partner",
    "routine",
]
START = datetime(2031, 3, 3, 9, 0, tzinfo=UTC)


def _texts(n: int, seed: int = 8) -> list[str]:
    """Markdown notes of about 1.2 KB, seeded."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = " ".join(rng.choice(WORDS) for _ in range(170))
        out.append(f"## Session note {i}\n\n- {body[:400]}\n- {body[400:800]}\n\n{body[800:]}")
    return out


def _world(store: Store, clients: int, sessions_per_client: int) -> tuple[Actor, list[int], list[list[int]]]:
    therapist = ensure_therapist(store, "bench@alliance.test")
    calendar = MemoryCalendar()
    keys = []
    for c in range(clients):
        for s in range(sessions_per_client):
            key = OccurrenceKey(f"c{c}-s{s}@bench")
            start = START + timedelta(days=s * 7, hours=c % 10, minutes=(c // 10) * 5)
            calendar.put(RemoteOccurrence(key=key, start=start, end=start + timedelta(minutes=50)))
            keys.append((c, key, start))
    connection = add_connection(store, therapist, "memory", "bench", {})
    sync_connection(store, connection, MemoryProvider(calendar))
    client_rows = [create_client(store, therapist) for _ in range(clients)]
    sessions: list[list[int]] = [[] for _ in range(clients)]
    for c, key, start in keys:
        occurrence = find_occurrence(store, therapist, key.ical_uid, start)
        sessions[c].append(assign_occurrence(store, therapist, occurrence, client_rows[c].code).id)
    return Actor(therapist, "benchmark"), [c.id for c in client_rows], sessions


def _floor_write_memory(key: bytes, texts: list[str]) -> tuple[float, list[bytes]]:
    aead = AESGCM(key)
    started = time.perf_counter()
    blobs = []
    for i, t in enumerate(texts):
        nonce = os.urandom(12)
        aad = f"notes.body|t1|c{i % 100}|s{i}|n{i}|v1".encode()
        blobs.append(nonce + aead.encrypt(nonce, t.encode(), aad))
    return time.perf_counter() - started, blobs


def _floor_write_io(url: str, key: bytes, texts: list[str]) -> float:
    """AESGCM + one bare INSERT and COMMIT per note, through the driver itself."""
    aead = AESGCM(key)
    if url.startswith("sqlite"):
        db = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE floor_notes (id INTEGER PRIMARY KEY, client INTEGER, body BLOB)")
        db.execute("CREATE INDEX floor_notes_client ON floor_notes (client)")  # as notes have theirs
        insert = "INSERT INTO floor_notes (client, body) VALUES (?, ?)"
        started = time.perf_counter()
        for i, t in enumerate(texts):
            nonce = os.urandom(12)
            blob = nonce + aead.encrypt(nonce, t.encode(), f"n{i}".encode())
            db.execute("BEGIN")
            db.execute(insert, (i % 100, blob))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed
    import psycopg

    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as db:
        db.execute("CREATE TABLE floor_notes (id SERIAL PRIMARY KEY, client INTEGER, body BYTEA)")
        db.execute("CREATE INDEX floor_notes_client ON floor_notes (client)")
        db.commit()
        started = time.perf_counter()
        for i, t in enumerate(texts):
            nonce = os.urandom(12)
            blob = nonce + aead.encrypt(nonce, t.encode(), f"n{i}".encode())
            db.execute("INSERT INTO floor_notes (client, body) VALUES (%s, %s)", (i % 100, blob))
            db.commit()
        return time.perf_counter() - started


def _floor_write_io_batched(url: str, key: bytes, texts: list[str], call: int) -> float:
    """AESGCM + a multi-row INSERT (``executemany``) and one COMMIT per ``call`` notes, through the driver."""
    aead = AESGCM(key)

    def sealed(start: int) -> list[tuple[int, bytes]]:
        rows = []
        for i in range(start, min(start + call, len(texts))):
            nonce = os.urandom(12)
            rows.append((i % 100, nonce + aead.encrypt(nonce, texts[i].encode(), f"n{i}".encode())))
        return rows

    if url.startswith("sqlite"):
        db = sqlite3.connect(make_url(url).database or "", isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(f"CREATE TABLE floor_bulk_{call} (id INTEGER PRIMARY KEY, client INTEGER, body BLOB)")
        db.execute(f"CREATE INDEX floor_bulk_{call}_client ON floor_bulk_{call} (client)")
        started = time.perf_counter()
        for start in range(0, len(texts), call):
            db.execute("BEGIN")
            db.executemany(f"INSERT INTO floor_bulk_{call} (client, body) VALUES (?, ?)", sealed(start))
            db.execute("COMMIT")
        elapsed = time.perf_counter() - started
        db.close()
        return elapsed
    import psycopg

    libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(libpq) as pg:
        pg.execute(f"CREATE TABLE floor_bulk_{call} (id SERIAL PRIMARY KEY, client INTEGER, body BYTEA)")
        pg.execute(f"CREATE INDEX floor_bulk_{call}_client ON floor_bulk_{call} (client)")
        pg.commit()
        started = time.perf_counter()
        for start in range(0, len(texts), call):
            with pg.cursor() as cur:
                cur.executemany(f"INSERT INTO floor_bulk_{call} (client, body) VALUES (%s, %s)", sealed(start))
            pg.commit()
        return time.perf_counter() - started


class _ReadFloor:
    """A bare SELECT of one client's 100 ciphertexts on an open driver connection, then AESGCM."""

    def __init__(self, url: str, key: bytes) -> None:
        self.aead = AESGCM(key)
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.db: Any = sqlite3.connect(make_url(url).database or "")
        else:
            import psycopg

            libpq = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            self.db = psycopg.connect(libpq, autocommit=True)

    def __call__(self) -> float:
        started = time.perf_counter()
        query = "SELECT id, body FROM floor_notes WHERE client = " + ("?" if self.sqlite else "%s")
        rows = self.db.execute(query, (7,)).fetchall()
        for note_id, blob in rows:
            self.aead.decrypt(bytes(blob[:12]), bytes(blob[12:]), f"n{note_id - 1}".encode())
        return time.perf_counter() - started

    def close(self) -> None:
        self.db.close()


def run(url: str, label: str, notes: int, clients: int, reads: int, calls: list[int]) -> None:
    store = Store.open(url, keyring=Keyring(MasterKeys.from_env_value(generate_key_text())))
    per_client = notes // clients
    sessions_per_client = 10
    actor, client_ids, sessions = _world(store, clients, sessions_per_client)
    texts = _texts(notes)

    # Writes: note i belongs to client i % clients, one of its sessions.
    started, cpu_started = time.perf_counter(), time.process_time()
    for i, t in enumerate(texts):
        c = i % clients
        create_note(store, actor, sessions[c][(i // clients) % sessions_per_client], t)
    ours_write = time.perf_counter() - started
    ours_write_cpu = time.process_time() - cpu_started

    key = AESGCM.generate_key(bit_length=256)
    cpu_started = time.process_time()
    floor_write, blobs = _floor_write_memory(key, texts)
    floor_write_cpu = time.process_time() - cpu_started
    io_write = _floor_write_io(url, key, texts)

    # Reads: the 100 notes of one client (list + decrypt, audited), median of `reads` runs,
    # interleaved with the floors so a load change hits all alike.
    target = client_ids[7]
    aead = AESGCM(key)
    mine = [(i, b) for i, b in enumerate(blobs) if i % clients == 7]
    ours_reads, floor_reads, io_reads, ours_reads_cpu = [], [], [], []
    read_floor = _ReadFloor(url, key)
    for _ in range(reads):
        started, cpu_started = time.perf_counter(), time.process_time()
        got = list_client_notes(store, actor, target)
        ours_reads.append(time.perf_counter() - started)
        ours_reads_cpu.append(time.process_time() - cpu_started)
        if len(got) != per_client:
            raise SystemExit(f"read {len(got)} notes of the client, expected {per_client}")
        started = time.perf_counter()
        for i, b in mine:
            aead.decrypt(b[:12], b[12:], f"notes.body|t1|c{i % 100}|s{i}|n{i}|v1".encode())
        floor_reads.append(time.perf_counter() - started)
        io_reads.append(read_floor())
    read_floor.close()

    # The batched path (core.notes.bulk, `alliance notes import`): the same notes again, in calls
    # of `call` notes (one transaction each, rows in multi-row INSERTs, one audit entry per note).
    bulk: list[tuple[int, float, float]] = []
    bulk_cpu: list[float] = []
    for call in calls:
        started, cpu_started = time.perf_counter(), time.process_time()
        for start in range(0, notes, call):
            items = [
                NewNote(sessions[i % clients][(i // clients) % sessions_per_client], texts[i])
                for i in range(start, min(start + call, notes))
            ]
            import_notes(store, actor, items)
        took = time.perf_counter() - started
        bulk_cpu.append(time.process_time() - cpu_started)
        bulk.append((call, took, _floor_write_io_batched(url, key, texts, call)))
    store.close()

    rate = notes / ours_write
    floor_rate, io_rate = notes / floor_write, notes / io_write
    read_ms = statistics.median(ours_reads) * 1000
    print(f"\n{label}: {notes:,} notes, {clients} clients, {per_client} notes per client")
    print(f"{'measure':<34} {'Alliance':>12} {'floor (no store)':>17} {'ratio':>8} {'same-I/O floor':>15} {'ratio':>7}")
    print(
        f"{'write throughput (notes/s)':<34} {rate:>12,.0f} {floor_rate:>17,.0f} {rate / floor_rate:>8.4f}"
        f" {io_rate:>15,.0f} {rate / io_rate:>7.2f}"
    )
    for call, took, io_took in bulk:
        b_rate, b_io = notes / took, notes / io_took
        name = f"batched write, {call:,}/call (notes/s)"
        print(
            f"{name:<34} {b_rate:>12,.0f} {floor_rate:>17,.0f} {b_rate / floor_rate:>8.4f}"
            f" {b_io:>15,.0f} {b_rate / b_io:>7.2f}"
        )
    floor_ms, io_ms = statistics.median(floor_reads) * 1000, statistics.median(io_reads) * 1000
    print(
        f"{'list+decrypt 100 notes (ms, median)':<34} {read_ms:>12.2f} {floor_ms:>17.3f} {read_ms / floor_ms:>8.1f}"
        f" {io_ms:>15.3f} {read_ms / io_ms:>7.1f}"
    )
    print(
        f"targets: read <= 50 ms: {'pass' if read_ms <= 50 else 'MISS'}; "
        f"write >= 0.5x floor (no store): {'pass' if rate / floor_rate >= 0.5 else 'MISS'}; "
        f"write >= 0.5x same-I/O floor: {'pass' if rate / io_rate >= 0.5 else 'MISS'}"
    )
    for call, took, io_took in bulk:
        ratio, io_ratio = (notes / took) / floor_rate, io_took / took
        print(
            f"batched {call:,}/call: write >= 0.5x floor (no store): {'pass' if ratio >= 0.5 else 'MISS'}; "
            f">= 0.5x same-I/O (batched) floor: {'pass' if io_ratio >= 0.5 else 'MISS'}"
        )
    # CPU time of this process for the same runs: on a machine shared with other work, wall time
    # also counts the time this process waited for a core. SQLite's work runs in this process and
    # is counted; PostgreSQL's server is another process and is not (its figures flatter Alliance).
    floor_cpu_rate = notes / floor_write_cpu
    print(f"CPU time of this process ({'SQLite counted' if url.startswith('sqlite') else 'server not counted'}):")
    rows = [("write, single note per call", notes / ours_write_cpu)]
    rows += [(f"batched write, {call:,}/call", notes / cpu) for (call, _, _), cpu in zip(bulk, bulk_cpu, strict=True)]
    for name, cpu_rate in rows:
        print(
            f"  {name + ' (notes/s)':<40} {cpu_rate:>10,.0f}  floor (no store) {floor_cpu_rate:>9,.0f}"
            f"  ratio {cpu_rate / floor_cpu_rate:.4f}"
        )
    read_cpu_ms = statistics.median(ours_reads_cpu) * 1000
    print(
        f"  {'list+decrypt 100 notes (ms, median)':<40} {read_cpu_ms:>10.2f}  target <= 50 ms: "
        f"{'pass' if read_cpu_ms <= 50 else 'MISS'}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--reads", type=int, default=30, help="list-and-decrypt repetitions (median reported)")
    parser.add_argument("--postgres", help="admin URL: a scratch database is created and dropped")
    parser.add_argument(
        "--calls", default="100,10000", help="notes per call of the batched path, comma-separated (default 100,10000)"
    )
    args = parser.parse_args()
    calls = [int(c) for c in args.calls.split(",") if c.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{Path(tmp) / 'notes.db'}", "SQLite", args.notes, args.clients, args.reads, calls)
    if args.postgres:
        name = f"alliance_bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.postgres, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(args.postgres).set(database=name).render_as_string(hide_password=False)
            run(url, "PostgreSQL", args.notes, args.clients, args.reads, calls)
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()


if __name__ == "__main__":
    main()
