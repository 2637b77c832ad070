"""Schemathesis against the app's own /openapi.json: no 5xx, and every answer is one the schema documents.

Bounded (a few derandomised examples per operation and mode) so it stays a quick regression net.
Driven by hand rather than with ``schemathesis.pytest.from_fixture``, whose node-id rewriting does not
work with the pytest in use; the checks are the same ``call_and_validate`` runs.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.schemas import APIOperation
from schemathesis.specs.openapi.checks import positive_data_acceptance

from alliance.settings import Settings
from alliance.syncing import sync_all
from core.accounts import create_api_token, create_therapist
from core.clients import assign_event, create_client
from core.mirror import add_connection
from core.store import Store
from tests.portal.feeds import Event, Feed, feed_server, soon

EXAMPLES = 25

# Operations where a request the JSON Schema accepts may still be refused with a 422 naming the field,
# for rules a schema cannot state: the IANA zone exists, the e-mail has a domain, the window's `to` is
# after its `from`, a date-time names a real instant, a feed URL has a usable host and port. For these
# the positive-data check allows 422 too (and only 422); every other operation must accept what its
# schema accepts.
SEMANTIC_422 = {
    "POST /api/v1/connections",
    "GET /api/v1/occurrences",
    "GET /api/v1/sessions",
    "POST /api/v1/clients",
    "PATCH /api/v1/clients/{code}",
    "POST /api/v1/assignments",
    # checklists: keys unique in a list, S2 kept in the start list, answers name items that apply
    # to the session, a skip has a reason, a text item done has its text
    "POST /api/v1/checklists/templates",
    "POST /api/v1/sessions/{session_id}/checklists/{phase}",
    "GET /api/v1/checklists/flags",  # the window's `to` after its `from`
}
POSITIVE_STATUSES = {401, 403, 404, 409, 422, 429}


@pytest.fixture
def feed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Feed]:
    # Fuzzed connections point at made-up hosts, and a fuzzed sync may fetch one: route every feed
    # request but the loopback one through a proxy address that refuses at once, so nothing leaves
    # the machine and no DNS lookup or connect timeout slows the run down.
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    with feed_server() as f:
        f.serve(
            Event("series@fuzz", soon(1, 17), "Session", rrule="FREQ=WEEKLY;COUNT=3"),
            Event("single@fuzz", soon(2, 9), "Intake", attendees=("client@example.org",)),
        )
        yield f


def _seed(store: Store, settings: Settings, therapist_id: int, feed: Feed) -> None:
    """A therapist with a synced connection, a client and sessions, so that small guessed ids hit rows."""
    add_connection(store, therapist_id, "ics", f"cal-{therapist_id}", {"source": feed.url})
    assert all(outcome.ok for outcome in sync_all(store, settings, therapist_id))
    code = create_client(store, therapist_id, email="client@example.org").code
    assign_event(store, therapist_id, "series@fuzz", code, from_start=soon(0, 0))


def _exercise(operation: APIOperation, mode: GenerationMode, headers: dict[str, str]) -> None:
    semantic = operation.label in SEMANTIC_422

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def exercise(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            headers=headers, excluded_checks=[positive_data_acceptance] if semantic else None
        )
        if semantic and mode is GenerationMode.POSITIVE:
            code = response.status_code
            assert code < 300 or code in POSITIVE_STATUSES, f"{operation.label}: {code} for schema-valid data"

    exercise()


def test_api_honours_its_schema(app: FastAPI, store: Store, feed: Feed) -> None:
    # Another therapist's rows come first, so guessed ids hit rows that are not ours (404s).
    other = create_therapist(store, "other@example.org")
    for _ in range(3):
        create_api_token(store, other)
    _seed(store, app.state.settings, other, feed)
    fuzzer = create_therapist(store, "fuzz@example.org")
    token = create_api_token(store, fuzzer, "fuzz").token
    _seed(store, app.state.settings, fuzzer, feed)
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _exercise(operation, mode, headers)
            except Unsatisfiable:
                # No inputs to break (e.g. GET /healthz): negative mode has nothing to generate.
                assert mode is GenerationMode.NEGATIVE, operation.label
        tested.append(operation.label)
    assert "DELETE /api/v1/tokens/{token_id}" in tested and "GET /readyz" in tested
    for label in (
        "GET /api/v1/connections",
        "POST /api/v1/connections",
        "PATCH /api/v1/connections/{connection_id}",
        "DELETE /api/v1/connections/{connection_id}",
        "POST /api/v1/connections/{connection_id}/sync",
        "GET /api/v1/occurrences",
        "GET /api/v1/occurrences/{occurrence_id}",
        "GET /api/v1/clients",
        "POST /api/v1/clients",
        "GET /api/v1/clients/{code}",
        "PATCH /api/v1/clients/{code}",
        "GET /api/v1/sessions",
        "GET /api/v1/sessions/{session_id}",
        "PATCH /api/v1/sessions/{session_id}",
        "POST /api/v1/assignments",
    ):
        assert label in tested, label
    assert set(tested) >= SEMANTIC_422
