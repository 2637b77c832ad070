"""Child process of the Outlook refresh race test: one worker process using one stored connection.

``python -m tests.integrations.outlook.refresh_child JOB.json`` (master key in
``ALLIANCE_TEST_MASTER_KEY``). Opens the database, reads the connection (its settings, with the
token cache as stored now: an expired access token), prints ``ready``, waits until the ``go`` file
exists, then runs ``mode``: ``sync`` is Alliance's own sync of the connection (``sync_one``), ``read``
is a complete listing through a provider built as the sync builds it (no sync lease, so two of
them overlap). ``unlocked`` builds that provider without the connection's database lock (the
failure the lock prevents). Prints ``ok`` or what failed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from alliance.providers import context_for, provider_for
from alliance.settings import Settings
from alliance.syncing import sync_one
from core.crypto import Keyring, MasterKeys
from core.mirror import get_connection, update_connection_settings
from core.store import Store
from core.store.db import make_engine


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    keyring = Keyring(MasterKeys.from_env_value(os.environ["ALLIANCE_TEST_MASTER_KEY"]))
    store = Store(make_engine(job["database_url"]), keyring=keyring)
    settings = Settings(home=Path(job["home"]), database_url=job["database_url"], **job["ms"])
    connection = get_connection(store, job["therapist_id"], job["connection_id"])
    assert connection is not None
    print("ready", flush=True)
    go = Path(job["go"])
    deadline = time.monotonic() + 60
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    if job["mode"] == "sync":
        outcome = sync_one(store, settings, connection)
        print("ok" if outcome.ok else f"{outcome.failure}: {outcome.error}", flush=True)
        return

    def save(new_settings: dict[str, Any]) -> None:
        update_connection_settings(store, connection.id, new_settings)

    provider = provider_for(
        connection, context_for(settings, "UTC"), save_settings=save, store=None if job["unlocked"] else store
    )
    pages = list(provider.list_changes(None))
    print("ok" if pages and pages[-1].is_last else "no last page", flush=True)


if __name__ == "__main__":
    main()
