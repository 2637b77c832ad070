"""Child process of the crash test: provisions one session, and is killed mid-create.

``python -m tests.video.crash_child DB_URL API_URL OAUTH_URL SESSION_ID`` (master key in
``ALLIANCE_TEST_MASTER_KEY``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alliance.settings import Settings
from alliance.video import provider_factory, video_config
from core.crypto import Keyring, MasterKeys
from core.store import Store
from core.store.db import make_engine
from core.video.service import reconcile_session


def main() -> None:
    db_url, api_url, oauth_url, session_id = sys.argv[1:5]
    keyring = Keyring(MasterKeys.from_env_value(os.environ["ALLIANCE_TEST_MASTER_KEY"]))
    store = Store(make_engine(db_url), keyring=keyring)
    settings = Settings(home=Path(os.environ.get("TMPDIR", "/tmp")), zoom_api_url=api_url, zoom_oauth_url=oauth_url)
    print("starting", flush=True)
    print(reconcile_session(store, int(session_id), provider_factory(settings), video_config(settings)), flush=True)


if __name__ == "__main__":
    main()
