"""Keyring throughput against raw AES-GCM, side by side in one run.

    python -m benchmarks.keyring [--seconds 0.5] [--rounds 7]

The floor is ``cryptography``'s AESGCM doing the same work: a fresh 12-byte nonce per message
stored in front of the ciphertext (so decrypting splits it off again), with the same associated
data. Alliance adds a key-id header, binds the row context into the
associated data, and looks the owner's cipher up in the keyring's cache (the decrypt path of
every list of occurrences). Target: >= 0.7x the floor's operations per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.crypto import Keyring, MasterKeys, Owner, generate_key_text
from core.store import Store

SIZES = (64, 1024, 64 * 1024)
CONTEXT = "occurrences.content|42|0123456789abcdef@google.com|2026-10-27T17:00:00+00:00"


def _rate(fn: Callable[[], object], seconds: float) -> float:
    """Operations per second of ``fn`` over about ``seconds``."""
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(200):
            fn()
        count += 200
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def _raw_encrypt(raw: AESGCM, plaintext: bytes, aad: bytes) -> bytes:
    nonce = os.urandom(12)
    return nonce + raw.encrypt(nonce, plaintext, aad)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=0.5, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median reported)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(
            f"sqlite:///{Path(tmp) / 'bench.db'}", keyring=Keyring(MasterKeys.from_env_value(generate_key_text()))
        )
        owner = Owner("therapist", 1)
        with store.session() as session:
            cipher = store.keyring.cipher(session, owner)
        raw = AESGCM(cipher.key)
        aad = (b"\x01" + cipher.kid) + CONTEXT.encode()
        print(
            f"{'payload':>8}  {'operation':<8}  {'raw AESGCM ops/s':>17}  {'keyring ops/s':>14}  {'ratio':>6}  target"
        )
        keyring = store.keyring
        with store.session() as session:
            for size in SIZES:
                plaintext = os.urandom(size)
                blob = cipher.encrypt(plaintext, CONTEXT)
                nonce = os.urandom(12)
                raw_blob = nonce + raw.encrypt(nonce, plaintext, aad)
                cases = {
                    "encrypt": (
                        lambda p=plaintext: _raw_encrypt(raw, p, aad),
                        lambda p=plaintext: keyring.cipher(session, owner).encrypt(p, CONTEXT),
                    ),
                    "decrypt": (
                        lambda b=raw_blob: raw.decrypt(b[:12], b[12:], aad),
                        lambda b=blob: keyring.decrypt(session, owner, b, CONTEXT),
                    ),
                }
                for name, (floor_fn, ours_fn) in cases.items():
                    floors, ours = [], []
                    for _ in range(args.rounds):  # interleave so load changes hit both alike
                        floors.append(_rate(floor_fn, args.seconds))
                        ours.append(_rate(ours_fn, args.seconds))
                    f, o = statistics.median(floors), statistics.median(ours)
                    verdict = "pass" if o / f >= 0.7 else "MISS"
                    print(f"{size:>8}  {name:<8}  {f:>17,.0f}  {o:>14,.0f}  {o / f:>6.2f}  >= 0.7x {verdict}")
        store.close()


if __name__ == "__main__":
    main()
