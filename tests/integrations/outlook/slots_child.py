"""Child process of the per-mailbox limit test: one "worker process" making Graph requests.

``python -m tests.integrations.outlook.slots_child JOB.json``: builds the Outlook provider the way
Alliance does (options from the JSON, ``slots_database_url`` included), prints ``ready``, waits
until the ``go`` file exists, then runs ``threads`` threads that each make ``requests`` GETs of
one event, and prints ``done``.
"""

from __future__ import annotations

import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from integrations.base.protocol import ProviderContext
from integrations.outlook import OutlookProvider


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text())
    context = ProviderContext(
        default_timezone="UTC",
        now=datetime.now(UTC),
        options={"outlook": job["options"]},
        save_settings=lambda _settings: None,
    )
    provider = OutlookProvider.build(job["settings"], context)
    path = f"/me/events/{quote(job['event_id'], safe='')}"
    print("ready", flush=True)
    go = Path(job["go"])
    while not go.exists():
        time.sleep(0.01)

    def work(_: int) -> None:
        for _ in range(job["requests"]):
            provider.client.get(path)

    with ThreadPoolExecutor(max_workers=job["threads"]) as pool:
        list(pool.map(work, range(job["threads"])))
    print("done", flush=True)


if __name__ == "__main__":
    main()
