"""Child process of the refresh race test: one worker provisioning one session.

``python -m tests.video.refresh_child DB_URL API_URL OAUTH_URL SESSION_ID GO_FILE [unlocked]``
(master key in ``ALLIANCE_TEST_MASTER_KEY``, the Zoom OAuth app in ``ALLIANCE_ZOOM_CLIENT_ID`` /
``ALLIANCE_ZOOM_CLIENT_SECRET``). Prints ``ready`` once imported, waits for GO_FILE (so that both
workers start together), then prints the outcome. ``unlocked`` builds providers without the
database lock (the failure the lock prevents).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from alliance.settings import Settings
from alliance.video import provider_factory, video_config
from core.crypto import Keyring, MasterKeys
from core.store import Store
from core.store.db import make_engine
from core.video.provider import MeetingProvider
from core.video.service import VideoConnectionInfo, reconcile_session


def main() -> None:
    db_url, api_url, oauth_url, session_id, go_file = sys.argv[1:6]
    unlocked = sys.argv[6:] == ["unlocked"]
    keyring = Keyring(MasterKeys.from_env_value(os.environ["ALLIANCE_TEST_MASTER_KEY"]))
    store = Store(make_engine(db_url), keyring=keyring)
    settings = Settings(
        home=Path(os.environ.get("TMPDIR", "/tmp")),
        zoom_api_url=api_url,
        zoom_oauth_url=oauth_url,
        zoom_client_id=os.environ["ALLIANCE_ZOOM_CLIENT_ID"],
        zoom_client_secret=os.environ["ALLIANCE_ZOOM_CLIENT_SECRET"],
    )
    factory = provider_factory(settings)
    if unlocked:
        locked_factory = factory

        def unlocked_factory(info: VideoConnectionInfo, save: Callable[[dict[str, Any]], None]) -> MeetingProvider:
            return locked_factory(dataclasses.replace(info, locked_update=None), save)

        factory = unlocked_factory
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not Path(go_file).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    print(reconcile_session(store, int(session_id), factory, video_config(settings)), flush=True)


if __name__ == "__main__":
    main()
