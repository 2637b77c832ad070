"""ALLIANCE_JOB_CLAIM_SECONDS: how soon the work of a worker that died mid-run is run by another."""

from __future__ import annotations

import pytest

from alliance.jobs import retry_policy
from alliance.settings import Settings
from core.jobs import InProcessRunner, JobRegistry, OutboxDelivery, _lifecycle
from core.jobs.outbox import relay
from core.store import Store
from tests.core.test_jobs import T0, Clock, add_event, deliveries, recorder


def test_a_dead_workers_delivery_runs_again_once_the_configured_claim_ran_out(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ALLIANCE_JOB_CLAIM_SECONDS", "30")
    policy = retry_policy(Settings())
    calls: list[str] = []
    registry = JobRegistry()
    registry.add_handler("links", "occurrence.created", recorder(calls))
    clock = Clock()
    runner = InProcessRunner(store, registry, policy=policy, clock=clock)
    event_id = add_event(store)
    relay(store, registry, T0)
    (delivery,) = deliveries(store).values()
    with store.session() as session:  # a worker claims it and is killed before reporting back
        assert _lifecycle.claim(session, OutboxDelivery.__table__, delivery.id, clock(), policy) is not None  # type: ignore[arg-type]
    clock.advance(seconds=25)
    assert runner.run_pending() == 0 and calls == []  # still claimed: nobody runs it twice
    clock.advance(seconds=10)  # 35 s: past the 30-second claim, not the default 10 minutes
    assert runner.run_pending() == 1
    assert calls == [event_id]
