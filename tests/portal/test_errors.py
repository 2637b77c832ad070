"""Error answers: problem+json for the API, plain pages for people, and nothing private in either."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from core.accounts import create_api_token
from core.store import Store
from tests.portal.conftest import PASSWORD, asgi_client, sign_in

pytestmark = pytest.mark.anyio

SECRET_TITLE = "Session with Maria Lopez (panic disorder)"
SECRET_EMAIL = "maria.lopez@example.org"


class Echo(BaseModel):
    text: str


@pytest.fixture
def failing_app(app: FastAPI) -> FastAPI:
    """The real app plus routes that fail the way a bug would, with private data in the exception."""

    @app.get("/api/v1/boom")
    def api_boom() -> None:
        raise RuntimeError(f"could not render {SECRET_TITLE} for {SECRET_EMAIL}")

    @app.get("/boom")
    def page_boom() -> None:
        raise ValueError(f"{SECRET_TITLE} {SECRET_EMAIL}")

    @app.post("/api/v1/echo")
    def echo(body: Echo) -> Echo:
        return body

    return app


@pytest.fixture
async def failing_client(failing_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(failing_app) as c:
        yield c


async def test_unexpected_exception_is_a_500_that_leaks_nothing(
    failing_client: httpx.AsyncClient, store: Store, therapist: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = create_api_token(store, therapist).token
    api = await failing_client.get("/api/v1/boom", headers={"Authorization": f"Bearer {token}"})
    assert api.status_code == 500 and api.headers["content-type"] == "application/problem+json"
    assert api.json()["title"] == "Internal Server Error"

    await sign_in(failing_client)
    page = await failing_client.get("/boom", headers={"accept": "text/html"})
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in page.text

    for response in (api, page):
        for private in (SECRET_TITLE, "Maria", SECRET_EMAIL, "ana@example.org", token, PASSWORD, "Traceback"):
            assert private not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert "RuntimeError" in logged and "ValueError" in logged  # the operator still learns what and where
    for private in (SECRET_TITLE, "Maria", SECRET_EMAIL, "ana@example.org", token, PASSWORD):
        assert private not in logged


async def test_validation_error_is_a_problem_naming_the_field(
    failing_client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    headers = {"Authorization": f"Bearer {create_api_token(store, therapist).token}"}
    missing = await failing_client.post("/api/v1/tokens", json={}, headers=headers)
    assert missing.status_code == 422 and missing.headers["content-type"] == "application/problem+json"
    body = missing.json()
    assert body["status"] == 422 and body["title"] == "Unprocessable Content"
    assert [(e["name"], e["location"]) for e in body["errors"]] == [("name", "body")]
    assert "name" in body["detail"]

    # The submitted value is never echoed (it could be a password).
    too_long = await failing_client.post("/api/v1/tokens", json={"name": PASSWORD * 10}, headers=headers)
    assert too_long.status_code == 422 and PASSWORD not in too_long.text

    bad_path = await failing_client.delete("/api/v1/tokens/not-a-number", headers=headers)
    assert bad_path.status_code == 422 and bad_path.json()["errors"][0]["name"] == "token_id"

    broken_json = await failing_client.post(
        "/api/v1/echo", content=b'{"text": ', headers={"content-type": "application/json"}
    )
    assert broken_json.status_code == 422 and broken_json.json()["errors"][0]["location"] == "body"


async def test_oversized_bodies_are_413(failing_client: httpx.AsyncClient) -> None:
    big = b'{"text": "' + b"x" * (1024 * 1024) + b'"}'
    declared = await failing_client.post("/api/v1/echo", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.headers["content-type"] == "application/problem+json"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: only counting catches it
        yield b'{"text": "'
        for _ in range(20):
            yield b"x" * 64 * 1024
        yield b'"}'

    streamed = await failing_client.post("/api/v1/echo", content=chunks(), headers={"content-type": "application/json"})
    assert "content-length" not in streamed.request.headers
    assert streamed.status_code == 413

    # Even a route that never reads its body refuses a declared oversize body, and the login form too.
    assert (await failing_client.post("/logout", content=big)).status_code == 413
    small = await failing_client.post("/api/v1/echo", json={"text": "fine"})
    assert small.status_code == 200 and small.json() == {"text": "fine"}


async def test_unknown_paths(client: httpx.AsyncClient) -> None:
    api = await client.get("/api/v1/nothing-here")
    assert api.status_code == 404 and api.headers["content-type"] == "application/problem+json"
    assert api.json() == {"type": "about:blank", "title": "Not Found", "status": 404, "detail": ""}
    page = await client.get("/nothing-here", headers={"accept": "text/html"})
    assert page.status_code == 404 and "There is nothing here" in page.text
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
