"""Worker processes renewing one Outlook connection's expired access token at once (issue 5, item 2).

A sync and another job (a write-back, the subscription upkeep) of one mailbox may run in different
worker processes, each with the connection's settings as it read them: the same stored MSAL cache,
its access token expired. Each process has its own in-memory cache, so without coordination each
redeems the refresh token and stores its own cache, the later write winning whatever its age. The
refresh runs under the connection's database lock (row lock on PostgreSQL, write lock on SQLite;
``core.mirror.update_connection_settings_locked``) and re-reads the stored cache under it, so the
second process uses the token the first one stored. Real child processes (``refresh_child``), the
real MSAL, the emulator's token endpoint counting the refresh grants.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from alliance.providers import context_for, provider_for
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.mirror import add_connection, ensure_therapist, get_connection
from core.store import Store
from core.sync import sync_connection
from sandbox.outlook import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET
from tests.conftest import TEST_MASTER_KEY
from tests.integrations.outlook.world import OutlookWorld, at, connect, timed

ROOT = Path(__file__).resolve().parents[3]
TOKEN_PATH = "/oauth2/v2.0/token"


def _refresh_grants(outlook: OutlookWorld) -> int:
    return len(outlook.state.requests(TOKEN_PATH, method="POST"))


def _refused(outlook: OutlookWorld) -> bool:
    return any(r.status == 401 for r in outlook.graph_requests())


def _ms(outlook: OutlookWorld) -> dict[str, Any]:
    emu = outlook.emu
    return {
        "ms_authority": emu.authority,
        "graph_api_url": emu.graph_url,
        "ms_client_id": DEFAULT_CLIENT_ID,
        "ms_client_secret": DEFAULT_CLIENT_SECRET,
        "ms_ca_bundle": str(emu.ca_file),
    }


def _stored_connection(store: Store, outlook: OutlookWorld, *, events: int = 1, page_size: int = 10) -> tuple[int, int]:
    """A connection whose stored cache holds an access token with less than MSAL's five minutes left."""
    outlook.state.settings.access_token_seconds = 200
    outlook.connection = connect(outlook.emu)
    outlook.state.settings.access_token_seconds = 3600
    for n in range(events):
        outlook.seed({"subject": f"S{n}", **timed(at(n + 2))})
    therapist = ensure_therapist(store, "ana@example.org")
    connection_id = add_connection(store, therapist, "outlook", "work", outlook.settings() | {"page_size": page_size})
    with outlook.state.lock:
        outlook.state.log.clear()
    return therapist, connection_id


def _stored_cache(store: Store, therapist: int, connection_id: int) -> dict[str, Any]:
    connection = get_connection(store, therapist, connection_id)
    assert connection is not None
    cache: dict[str, Any] = json.loads(connection.settings["token_cache"])
    return cache


def _run(
    store: Store,
    outlook: OutlookWorld,
    tmp_path: Path,
    ids: tuple[int, int],
    modes: list[str],
    *,
    unlocked: bool = False,
    one_after_the_other: bool = False,
) -> list[str]:
    """Start one child per mode, all having read the connection; release them together (or in turn)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ALLIANCE_")}
    env.update({"ALLIANCE_TEST_MASTER_KEY": TEST_MASTER_KEY, "NO_PROXY": "127.0.0.1,localhost"})
    children, gos = [], []
    for i, mode in enumerate(modes):
        go = tmp_path / f"go{i}" if one_after_the_other else tmp_path / "go"
        job: dict[str, Any] = {
            "database_url": store.engine.url.render_as_string(hide_password=False),
            "home": str(tmp_path),
            "ms": _ms(outlook),
            "therapist_id": ids[0],
            "connection_id": ids[1],
            "mode": mode,
            "unlocked": unlocked,
            "go": str(go),
        }
        spec = tmp_path / f"job{i}.json"
        spec.write_text(json.dumps(job))
        gos.append(go)
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "tests.integrations.outlook.refresh_child", str(spec)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    outcomes = []
    try:
        for child in children:  # every child has read the stale settings before anyone refreshes
            assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        for child, go in zip(children, gos, strict=True):
            go.touch()
            if one_after_the_other:
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0, err
                outcomes.append(out.strip())
        if not one_after_the_other:
            for child in children:
                out, err = child.communicate(timeout=120)
                assert child.returncode == 0, err
                outcomes.append(out.strip())
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    return outcomes


def _newest_refresh_token(outlook: OutlookWorld) -> str:
    with outlook.state.lock:
        return str(list(outlook.state.refresh_tokens)[-1])


def test_a_sync_and_another_job_in_two_processes_refresh_once(
    store: Store, outlook: OutlookWorld, tmp_path: Path
) -> None:
    ids = _stored_connection(store, outlook)
    outcomes = _run(store, outlook, tmp_path, ids, ["sync", "read"])
    assert outcomes == ["ok", "ok"]
    assert _refresh_grants(outlook) == 1
    cache = _stored_cache(store, *ids)
    # The stored cache holds the refresh token the one refresh issued, and its access token.
    assert [e["secret"] for e in cache["RefreshToken"].values()] == [_newest_refresh_token(outlook)]
    (access,) = cache["AccessToken"].values()
    assert outlook.state.access_tokens[access["secret"]][0]  # a token the emulator issued and knows
    connection = get_connection(store, *ids)
    assert connection is not None and connection.health == "ok"


def test_two_syncs_whose_settings_were_read_before_the_refresh_refresh_once(
    store: Store, outlook: OutlookWorld, tmp_path: Path
) -> None:
    # Both workers listed the connection (its stale cache) before either synced; the syncs run in
    # turn (one lease per connection), the second after the first stored its new cache.
    ids = _stored_connection(store, outlook)
    outcomes = _run(store, outlook, tmp_path, ids, ["sync", "sync"], one_after_the_other=True)
    assert outcomes == ["ok", "ok"]
    assert _refresh_grants(outlook) == 1
    cache = _stored_cache(store, *ids)
    assert [e["secret"] for e in cache["RefreshToken"].values()] == [_newest_refresh_token(outlook)]


def test_without_the_lock_each_process_refreshes_and_stores_its_own_cache(
    store: Store, outlook: OutlookWorld, tmp_path: Path
) -> None:
    # The failure the lock prevents, through the same stack without it.
    ids = _stored_connection(store, outlook)
    outcomes = _run(store, outlook, tmp_path, ids, ["read", "read"], unlocked=True)
    assert outcomes == ["ok", "ok"]
    assert _refresh_grants(outlook) == 2


def test_a_refused_refresh_under_the_lock_still_asks_for_a_reconnect(
    store: Store, outlook: OutlookWorld, tmp_path: Path
) -> None:
    therapist, connection_id = _stored_connection(store, outlook)
    before = _stored_cache(store, therapist, connection_id)
    outlook.state.revoke_consent()  # the refresh token now gets invalid_grant
    connection = get_connection(store, therapist, connection_id)
    assert connection is not None

    outcome = sync_one(store, Settings(home=tmp_path, **_ms(outlook)), connection)

    assert outcome.failure == "source" and outcome.error is not None and "connect outlook" in outcome.error
    assert _refresh_grants(outlook) == 1
    after = get_connection(store, therapist, connection_id)
    assert after is not None and after.health == "needs_reconnect"
    assert _stored_cache(store, therapist, connection_id) == before  # nothing half-written under the lock


def test_a_token_refused_while_a_page_holds_the_connection_is_renewed_after_its_commit(
    store: Store, outlook: OutlookWorld, tmp_path: Path
) -> None:
    # A page's transaction holds the connection's row (the sync lease) while the next pages are
    # fetched; a refresh they need waits for that commit, it does not deadlock the sync.
    therapist, connection_id = _stored_connection(store, outlook, events=8, page_size=1)
    connection = get_connection(store, therapist, connection_id)
    assert connection is not None
    settings = Settings(home=tmp_path, **_ms(outlook))
    provider = provider_for(connection, context_for(settings, "UTC"), store=store)
    # Each page takes a while to arrive: the next one is in flight while the first commits.
    outlook.state.settings.latency = 0.1
    refused_while_held: list[bool] = []
    grants_while_held: list[int] = []

    def hold_the_first_page(point: str) -> None:
        if point == "before_commit" and not refused_while_held:
            outlook.state.expire_access_tokens()  # Graph now answers 401: a forced refresh is due
            deadline = time.monotonic() + 5
            while not _refused(outlook) and time.monotonic() < deadline:
                time.sleep(0.01)
            refused_while_held.append(_refused(outlook))
            time.sleep(0.3)  # the refresh is waiting for this transaction's lock meanwhile
            grants_while_held.append(_refresh_grants(outlook))

    report = sync_connection(store, connection_id, provider, checkpoint=hold_the_first_page)

    assert refused_while_held == [True]
    assert grants_while_held == [1]  # the second refresh was not made while the page held the row
    assert report.created == 8
    assert _refresh_grants(outlook) == 2  # the expired one at the start, the refused one mid-sync
    cache = _stored_cache(store, therapist, connection_id)
    assert [e["secret"] for e in cache["RefreshToken"].values()] == [_newest_refresh_token(outlook)]
