"""What the per-mailbox limit costs a Graph request: Alliance's client against bare httpx, side by side.

The Outlook emulator runs in this process (uvicorn in a thread, HTTPS with its test CA) with one
seeded event. Interleaved ``--repeat`` rounds of ``--requests`` sequential GETs of that event:

    floor      httpx alone: the same GET, same headers, one kept-alive client, token fetched once
    process    ``GraphClient.get`` with the per-process semaphore (the embedded default)
    postgres   ``GraphClient.get`` with the PostgreSQL advisory slots (``core/store/slots.py``):
               a pooled connection, ``pg_try_advisory_lock`` and ``pg_advisory_unlock`` per request

Reported: the median time per request of each and the ratios to the floor.
``python -m benchmarks.mailbox_slots --postgres postgresql+psycopg://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx

from core.store.db import make_engine
from core.store.slots import AdvisorySlots, ThreadSlots
from integrations.base.protocol import ProviderContext
from integrations.outlook import OutlookProvider
from integrations.outlook.client import BASE_PREFERENCES, MAX_CONCURRENT, GraphClient
from integrations.outlook.transport import ssl_context
from sandbox.outlook import OutlookState, run_outlook_emulator
from tests.integrations.outlook.world import at, connect, options_for, timed


def _per_request_ms(run: Callable[[], Any], requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        run()
    return (time.perf_counter() - started) * 1000 / requests


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--postgres", help="a PostgreSQL URL (any database: advisory locks only)")
    parser.add_argument("--json", help="write every sample and the summary here")
    args = parser.parse_args()

    with run_outlook_emulator(OutlookState(seed=3)) as emu:
        event = emu.state.seed_event({"subject": "S", **timed(at(1))})
        settings = connect(emu)
        options = options_for(emu)
        context = ProviderContext(default_timezone="UTC", options={"outlook": options})
        provider = OutlookProvider.build(settings, context)
        path = f"/me/events/{quote(event['id'], safe='')}"
        token = provider.tokens.access_token()

        def client_with(slots: Any) -> GraphClient:
            return GraphClient(
                provider.tokens,
                graph_url=emu.graph_url,
                mailbox=provider.settings.mailbox,
                ca_bundle=options["ca_bundle"],
                slots=slots,
            )

        floor_http = httpx.Client(verify=ssl_context(options["ca_bundle"]))
        headers = [*BASE_PREFERENCES, ("Authorization", f"Bearer {token}")]
        url = f"{emu.graph_url.rstrip('/')}{path}"
        runs: dict[str, Callable[[], Any]] = {
            "floor": lambda: floor_http.get(url, headers=headers).raise_for_status(),
            "process": lambda c=client_with(ThreadSlots(MAX_CONCURRENT)): c.get(path),
        }
        engine = None
        if args.postgres:
            engine = make_engine(args.postgres)
            runs["postgres"] = lambda c=client_with(AdvisorySlots(engine, MAX_CONCURRENT)): c.get(path)
        for run in runs.values():  # warm up: connections, TLS sessions, the pool
            _per_request_ms(run, 20)
        samples: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, run in runs.items():
                samples[name].append(_per_request_ms(run, args.requests))
        floor_http.close()
        if engine is not None:
            engine.dispose()

    medians = {name: statistics.median(values) for name, values in samples.items()}
    summary = {
        "ms_per_request": medians,
        "ratio_to_floor": {name: medians[name] / medians["floor"] for name in medians},
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "requests": args.requests,
        "repeat": args.repeat,
    }
    print(f"{'':10} {'ms/request':>10} {'x floor':>8}")
    for name, value in medians.items():
        print(f"{name:10} {value:10.2f} {value / medians['floor']:8.2f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"samples": samples, "summary": summary}, out, indent=2)


if __name__ == "__main__":
    main()
