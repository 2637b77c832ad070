"""Envelope encryption: master key versions wrap per-owner data keys, data keys encrypt payloads.

Ciphertext layout (``FORMAT`` byte, 16-byte key id, 12-byte nonce, AES-256-GCM ciphertext+tag).
The header and a caller-given *context* (table, column and the row's identity) are associated
data, so a ciphertext copied into another row, column or owner fails to decrypt.
"""

from __future__ import annotations

import secrets
import ssl
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import Select, event, func, select, update
from sqlalchemy.orm import Session

from core.crypto.masterkey import MasterKeyError, MasterKeys
from core.crypto.models import DataKey, MasterKeyCheck

FORMAT = b"\x01"
KID_BYTES = 16
NONCE_BYTES = 12
HEADER_BYTES = 1 + KID_BYTES
CHECK_PLAINTEXT = b"alliance master key check v1"
if (HEADER_BYTES, HEADER_BYTES + NONCE_BYTES) != (17, 29):  # Keyring.decrypt's literal offsets
    raise ImportError("ciphertext layout changed: update the offsets in Keyring.decrypt")
_NONCE_AT = HEADER_BYTES
_BODY_AT = HEADER_BYTES + NONCE_BYTES


def new_nonce() -> bytes:
    """A fresh random 96-bit AES-GCM nonce from OpenSSL's CSPRNG.

    Not ``os.urandom``: its ``getrandom()`` call lets go of the interpreter lock, and getting the
    lock back while another thread runs Python costs up to the 5 ms switch interval. A first
    mirror seals every row while its page fetcher and writer threads run, so that was a wait per
    row (benchmarks/README.md, "the interpreter lock"). ``ssl.RAND_bytes`` keeps the lock, and
    OpenSSL's DRBG reseeds itself in a forked child, so parent and child never share nonces
    (tests/core/test_keyring.py).
    """
    return ssl.RAND_bytes(NONCE_BYTES)


# How long a process keeps using an owner's current key without asking the database again. Another
# process may re-key the owner (``alliance keys reencrypt``); after this long every process seals
# with the new key, which is what lets ``core.crypto.retire`` destroy the superseded one safely.
OWNER_CACHE_SECONDS = 300.0


class DecryptionError(Exception):
    """A ciphertext that cannot be decrypted here: wrong row, wrong owner, or a destroyed key."""


class KeyDestroyed(DecryptionError):
    """The data key was destroyed (crypto-shredded); the data is gone for good."""


class Owner(NamedTuple):
    """Who a data key belongs to, e.g. ``Owner("therapist", 3)`` or ``Owner("client", 12)``.

    A named tuple rather than a frozen dataclass: the keyring hashes (encrypt: the owner's cipher)
    and compares (decrypt: the key's owner) one per field of every row, and a tuple does both in C,
    where a dataclass runs its generated ``__hash__`` / ``__eq__`` in Python (benchmarks/keyring.py).
    """

    kind: str
    id: int


@dataclass(frozen=True, slots=True)
class OwnerCipher:
    """Encrypts and decrypts one owner's payloads with its unwrapped data key (the hot path)."""

    owner: Owner
    kid: bytes
    aead: AESGCM
    key: bytes = field(repr=False)  # kept to re-wrap on master rotation; never logged
    header: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "header", FORMAT + self.kid)

    # The two methods below run once per field of every row read or written: kept to the fewest
    # Python operations (benchmarks/keyring.py measures them against bare AESGCM).
    def encrypt(self, plaintext: bytes, context: str) -> bytes:
        header = self.header
        nonce = new_nonce()
        return b"".join((header, nonce, self.aead.encrypt(nonce, plaintext, header + context.encode())))

    def encrypt_text(self, text: str, context: str) -> bytes:
        return self.encrypt(text.encode(), context)

    def decrypt(self, blob: bytes, context: str) -> bytes:
        header = self.header
        if not blob.startswith(header):
            raise DecryptionError("ciphertext belongs to another key")
        try:
            return self.aead.decrypt(blob[_NONCE_AT:_BODY_AT], blob[_BODY_AT:], header + context.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext does not belong to this row") from None

    def decrypt_text(self, blob: bytes, context: str) -> str:
        return self.decrypt(blob, context).decode()


def _current(owner: Owner) -> Select[Any]:
    return select(DataKey).where(
        DataKey.owner_kind == owner.kind, DataKey.owner_id == owner.id, DataKey.superseded_at.is_(None)
    )


@contextmanager
def _scrub_on_write(session: Session) -> Iterator[None]:
    """On SQLite, have the bytes a destroyed key's row held overwritten with zeros rather than left
    in the page's free space (PostgreSQL's dump never shows dead row versions).

    Scoped to the writes inside the block: ``secure_delete`` belongs to the connection, which goes
    back to the pool afterwards, and left on it would make every later delete through that
    connection zero its pages too. SQLite frees (and so zeroes) a row's old bytes while the UPDATE
    runs, so turning it off again before the commit keeps the scrub.
    """
    if session.get_bind().dialect.name != "sqlite":
        yield
        return
    connection = session.connection()
    previous = int(connection.exec_driver_sql("PRAGMA secure_delete").scalar_one())
    connection.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA secure_delete={previous}")  # 0, 1 or 2 (FAST): an int


def _wrap_context(kid: str, owner: Owner) -> bytes:
    return f"alliance data key|{kid}|{owner.kind}|{owner.id}".encode()


class Keyring:
    """Data keys per owner, wrapped by versioned master keys; unwrapped keys are cached in memory."""

    def __init__(self, master: MasterKeys) -> None:
        self.master = master
        self._ciphers: dict[bytes, OwnerCipher] = {}
        # owner -> (its current cipher, time.monotonic() when that was last read from the database).
        # One dict, so the hot path hashes the owner once.
        self._by_owner: dict[Owner, tuple[OwnerCipher, float]] = {}
        self.owner_cache_seconds = OWNER_CACHE_SECONDS
        # ciphertext header (format byte + kid) -> (owner, bound AESGCM.decrypt): the decrypt fast
        # path's cache. Keyed by the whole header, so one slice of the blob finds the key, checks
        # the format and is the start of the associated data.
        self._fast: dict[bytes, tuple[Owner, Callable[[bytes, bytes, bytes], bytes]]] = {}

    # -- master key checks -------------------------------------------------------------------

    def verify(self, session: Session) -> None:
        """Refuse a master key that does not match the data; record checks for new versions."""
        checks = {c.version: c.probe for c in session.scalars(select(MasterKeyCheck))}
        for version, blob in checks.items():
            key = self.master.keys.get(version)
            if key is None:
                if self._version_in_use(session, version):
                    raise MasterKeyError(
                        f"the master key does not match the data: version {version} is missing "
                        f"from {self.master.source}"
                    )
                continue
            try:
                AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], b"check|%d" % version)
            except InvalidTag:
                raise MasterKeyError(
                    f"the master key does not match the data (version {version} from {self.master.source})"
                ) from None
        for version, key in self.master.keys.items():
            if version not in checks:
                nonce = new_nonce()
                blob = nonce + AESGCM(key).encrypt(nonce, CHECK_PLAINTEXT, b"check|%d" % version)
                session.add(MasterKeyCheck(version=version, probe=blob))
        session.flush()

    def _version_in_use(self, session: Session, version: int) -> bool:
        used = session.scalar(
            select(func.count()).where(DataKey.master_version == version, DataKey.wrapped.is_not(None))
        )
        return bool(used)

    # -- data keys ------------------------------------------------------------------------------

    def cipher(self, session: Session, owner: Owner, parent: Owner | None = None) -> OwnerCipher:
        """The cipher of ``owner``, creating its data key on first use.

        A key with a ``parent`` (a client's key under its therapist's) is wrapped by the parent's
        data key; otherwise by the active master key.
        """
        entry = self._by_owner.get(owner)
        if entry is not None and time.monotonic() - entry[1] < self.owner_cache_seconds:
            return entry[0]
        cached = entry[0] if entry is not None else None
        row = session.scalar(_current(owner))
        if row is None:
            return self._create(session, owner, parent)
        if row.wrapped is None:
            raise KeyDestroyed(f"the data key of {owner.kind} {owner.id} was destroyed")
        if cached is not None and cached.kid.hex() == row.kid:
            self._by_owner[owner] = (cached, time.monotonic())
            return cached
        return self._unwrap_cached(session, row, current=True)

    def rekey(self, session: Session, owner: Owner) -> OwnerCipher:
        """Give ``owner`` a new current data key; the old one is superseded but still decrypts.

        The new key is wrapped the way the old one was (by the parent's current key, or by the
        active master key); data keys wrapped under the old key are re-wrapped under the new one.
        Callers re-encrypt the owner's payloads in the same transaction (``alliance keys reencrypt``).
        """
        old = session.scalar(_current(owner))
        if old is None or old.wrapped is None:
            raise KeyDestroyed(f"{owner.kind} {owner.id} has no live data key to replace")
        old_cipher = self._unwrap_cached(session, old)
        parent: Owner | None = None
        if old.parent_kid is not None:
            parent_row = session.get_one(DataKey, old.parent_kid)
            parent = Owner(parent_row.owner_kind, parent_row.owner_id)
        old.superseded_at = datetime.now(UTC)
        session.flush()  # the partial unique index allows one current key per owner
        self._by_owner.pop(owner, None)
        cipher = self._create(session, owner, parent)
        for child in session.scalars(
            select(DataKey).where(DataKey.parent_kid == old.kid, DataKey.wrapped.is_not(None))
        ):
            child_cipher = self._unwrap_cached(session, child)
            nonce = new_nonce()
            child.wrapped = nonce + cipher.aead.encrypt(
                nonce, child_cipher.key, _wrap_context(child.kid, child_cipher.owner)
            )
            child.parent_kid = cipher.kid.hex()
            child.rotated_at = datetime.now(UTC)
        del old_cipher  # unwrapped above so a broken old key fails before anything changes
        session.flush()
        return cipher

    def _create(self, session: Session, owner: Owner, parent: Owner | None) -> OwnerCipher:
        kid = secrets.token_hex(KID_BYTES)
        key = AESGCM.generate_key(bit_length=256)
        nonce = new_nonce()
        if parent is not None:
            parent_cipher = self.cipher(session, parent)
            wrapped = nonce + parent_cipher.aead.encrypt(nonce, key, _wrap_context(kid, owner))
            row = DataKey(
                kid=kid, owner_kind=owner.kind, owner_id=owner.id, parent_kid=parent_cipher.kid.hex(), wrapped=wrapped
            )
        else:
            wrapped = nonce + AESGCM(self.master.active_key).encrypt(nonce, key, _wrap_context(kid, owner))
            row = DataKey(
                kid=kid, owner_kind=owner.kind, owner_id=owner.id, master_version=self.master.active, wrapped=wrapped
            )
        session.add(row)
        session.flush()
        cipher = self._remember(OwnerCipher(owner, bytes.fromhex(kid), AESGCM(key), key))
        # A new key exists only once its row commits: if the transaction rolls back, forget it,
        # or later data would be encrypted under a key that was never stored (and be lost).
        event.listen(session, "after_soft_rollback", lambda *_: self._forget(cipher), once=True)
        return cipher

    def _forget(self, cipher: OwnerCipher) -> None:
        if self._ciphers.get(cipher.kid) is cipher:
            del self._ciphers[cipher.kid]
            self._fast.pop(cipher.header, None)
        entry = self._by_owner.get(cipher.owner)
        if entry is not None and entry[0] is cipher:
            del self._by_owner[cipher.owner]

    def _remember(self, cipher: OwnerCipher, *, current: bool = True) -> OwnerCipher:
        self._ciphers[cipher.kid] = cipher
        if current:
            self._by_owner[cipher.owner] = (cipher, time.monotonic())
        self._fast[cipher.header] = (cipher.owner, cipher.aead.decrypt)
        return cipher

    def _unwrap(self, session: Session, row: DataKey, *, current: bool | None = None) -> OwnerCipher:
        owner = Owner(row.owner_kind, row.owner_id)
        if row.wrapped is None:
            raise KeyDestroyed(f"the data key of {owner.kind} {owner.id} was destroyed")
        if row.parent_kid is not None:
            parent_row = session.get_one(DataKey, row.parent_kid)
            wrapping = self._unwrap_cached(session, parent_row).aead
        else:
            version = row.master_version or 0
            if version not in self.master.keys:
                raise MasterKeyError(f"master key version {version} is not loaded from {self.master.source}")
            wrapping = AESGCM(self.master.keys[version])
        try:
            key = wrapping.decrypt(row.wrapped[:NONCE_BYTES], row.wrapped[NONCE_BYTES:], _wrap_context(row.kid, owner))
        except InvalidTag:
            raise MasterKeyError("the master key does not match the data (a data key failed to unwrap)") from None
        # A superseded key (still decrypting what was sealed under it) never becomes the owner's
        # cached current key: new data is sealed with the current one only.
        is_current = row.superseded_at is None if current is None else current
        return self._remember(OwnerCipher(owner, bytes.fromhex(row.kid), AESGCM(key), key), current=is_current)

    def _unwrap_cached(self, session: Session, row: DataKey, *, current: bool = False) -> OwnerCipher:
        cached = self._ciphers.get(bytes.fromhex(row.kid))
        if cached is None:
            return self._unwrap(session, row, current=current or None)
        if current:
            self._remember(cached)
        return cached

    def decrypt(self, session: Session, owner: Owner, blob: bytes, context: str) -> bytes:
        """Decrypt ``blob`` that must belong to ``owner`` and to ``context``."""
        # Inlined fast path for a cached key: every row of every listing comes through here, so it
        # uses literal offsets (1 format byte, 16-byte key id, 12-byte nonce) and a bound method.
        # The header slice is the cache key (another format byte simply misses) and the start of
        # the associated data.
        header = blob[:17]
        fast = self._fast.get(header)
        if fast is None or (fast[0] is not owner and fast[0] != owner):
            return self.cipher_for_blob(session, owner, blob).decrypt(blob, context)
        try:
            return fast[1](blob[17:29], blob[29:], header + context.encode())
        except InvalidTag:
            raise DecryptionError("ciphertext does not belong to this row") from None

    def cipher_for_blob(self, session: Session, owner: Owner, blob: bytes) -> OwnerCipher:
        kid = blob[1:HEADER_BYTES]
        cipher = self._ciphers.get(kid)
        if cipher is None:
            row = session.get(DataKey, kid.hex())
            if row is None:
                raise DecryptionError("ciphertext refers to an unknown data key")
            cipher = self._unwrap(session, row)
        if cipher.owner is not owner and cipher.owner != owner:
            raise DecryptionError("ciphertext belongs to another owner")
        return cipher

    # -- lifecycle ------------------------------------------------------------------------------

    def rotate(self, session: Session) -> int:
        """Re-wrap every master-wrapped data key under the active master version.

        Payloads are untouched: only the small wrapped-key rows change. Returns how many moved.
        """
        self.verify(session)
        moved = 0
        rows = session.scalars(
            select(DataKey).where(
                DataKey.parent_kid.is_(None),
                DataKey.wrapped.is_not(None),
                DataKey.master_version != self.master.active,
            )
        ).all()
        for row in rows:
            cipher = self._unwrap_cached(session, row)
            nonce = new_nonce()
            row.wrapped = nonce + AESGCM(self.master.active_key).encrypt(
                nonce, cipher.key, _wrap_context(row.kid, cipher.owner)
            )
            row.master_version = self.master.active
            row.rotated_at = datetime.now(UTC)
            moved += 1
        session.flush()
        return moved

    def unadopted_version(self, session: Session) -> int | None:
        """The active master version when no live data key is wrapped by it yet while older
        versions still wrap some: a rotation wrote this version (to the key file) and was
        interrupted before its re-wrap committed. ``rotate`` completes it without a new version.

        None once the active version wraps anything (a completed rotation, or a process that
        started with it since), and on a database with no master-wrapped key at all: there a new
        version is what the operator asked for.
        """
        in_use = self.versions_in_use(session)
        if self.master.active in in_use:
            return None
        return self.master.active if any(v != self.master.active for v in in_use) else None

    def versions_in_use(self, session: Session) -> dict[int, int]:
        """Master version -> number of live data keys it wraps."""
        rows = session.execute(
            select(DataKey.master_version, func.count())
            .where(DataKey.master_version.is_not(None), DataKey.wrapped.is_not(None))
            .group_by(DataKey.master_version)
        ).all()
        return {int(v): int(n) for v, n in rows if v is not None}

    def can_retire(self, session: Session, version: int) -> bool:
        return version != self.master.active and not self._version_in_use(session, version)

    def destroy_superseded(self, session: Session, kid: str) -> None:
        """Destroy one superseded data key (``core.crypto.retire`` checked nothing needs it)."""
        with _scrub_on_write(session):
            session.execute(
                update(DataKey)
                .where(DataKey.kid == kid, DataKey.superseded_at.is_not(None))
                .values(wrapped=None, destroyed_at=datetime.now(UTC))
            )
        self._ciphers.pop(bytes.fromhex(kid), None)
        self._fast.pop(FORMAT + bytes.fromhex(kid), None)

    def destroy(self, session: Session, owner: Owner) -> bool:
        """Crypto-shred ``owner``'s data key (and keys wrapped under it). True if a key was destroyed."""
        rows = session.scalars(
            select(DataKey).where(
                DataKey.owner_kind == owner.kind, DataKey.owner_id == owner.id, DataKey.wrapped.is_not(None)
            )
        ).all()
        if not rows:
            return False
        now = datetime.now(UTC)
        kids = [row.kid for row in rows]  # the current key and any superseded ones
        with _scrub_on_write(session):
            while kids:
                kid = kids.pop()
                session.execute(update(DataKey).where(DataKey.kid == kid).values(wrapped=None, destroyed_at=now))
                self._ciphers.pop(bytes.fromhex(kid), None)
                self._fast.pop(FORMAT + bytes.fromhex(kid), None)
                kids.extend(session.scalars(select(DataKey.kid).where(DataKey.parent_kid == kid)))
        self._by_owner = {o: e for o, e in self._by_owner.items() if e[0].kid in self._ciphers}
        session.flush()
        return True
