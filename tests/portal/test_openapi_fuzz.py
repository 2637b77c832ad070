"""Schemathesis against the app's own /openapi.json: no 5xx, and every answer is one the schema documents.

Bounded (a few derandomised examples per operation and mode) so it stays a quick regression net.
Driven by hand rather than with ``schemathesis.pytest.from_fixture``, whose node-id rewriting does not
work with the pytest in use; the checks are the same ``call_and_validate`` runs.
"""

from __future__ import annotations

import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from core.accounts import create_api_token, create_therapist
from core.store import Store

EXAMPLES = 25


def test_api_honours_its_schema(app: FastAPI, store: Store) -> None:
    # Another therapist's tokens come first, so guessed ids hit tokens that are not ours (404s).
    other = create_therapist(store, "other@example.org")
    for _ in range(3):
        create_api_token(store, other)
    token = create_api_token(store, create_therapist(store, "fuzz@example.org"), "fuzz").token
    headers = {"Authorization": f"Bearer {token}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)

    tested = []
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def exercise(case: schemathesis.Case) -> None:
                case.call_and_validate(headers=headers)

            try:
                exercise()
            except Unsatisfiable:
                # No inputs to break (e.g. GET /healthz): negative mode has nothing to generate.
                assert mode is GenerationMode.NEGATIVE, operation.label
        tested.append(operation.label)
    assert "DELETE /api/v1/tokens/{token_id}" in tested and "GET /readyz" in tested
