"""Personal API tokens over HTTP: create, use, revoke, tamper; each therapist sees only their own."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from core.accounts import create_api_token, create_therapist, revoke_api_token
from core.store import Store
from tests.portal.conftest import asgi_client, csrf_from, sign_in

pytestmark = pytest.mark.anyio


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_token_create_use_revoke(client: httpx.AsyncClient, store: Store, therapist: int) -> None:
    new = create_api_token(store, therapist, "laptop")
    assert new.token.startswith("alliance_") and new.token.removeprefix("alliance_").startswith(new.prefix)

    me = await client.get("/api/v1/me", headers=bearer(new.token))
    assert me.status_code == 200
    assert me.json() == {"id": therapist, "email": "ana@example.org", "display_name": "Ana", "timezone": "UTC"}

    created = await client.post("/api/v1/tokens", json={"name": "script"}, headers=bearer(new.token))
    assert created.status_code == 201
    second = created.json()
    assert second["token"].startswith("alliance_") and second["name"] == "script" and not second["revoked"]

    listed = (await client.get("/api/v1/tokens", headers=bearer(second["token"]))).json()
    assert [t["name"] for t in listed] == ["laptop", "script"]
    assert all("token" not in t for t in listed)  # the secret is never listed
    assert listed[0]["last_used_at"] is not None

    revoked = await client.delete(f"/api/v1/tokens/{new.id}", headers=bearer(second["token"]))
    assert revoked.status_code == 204
    refused = await client.get("/api/v1/me", headers=bearer(new.token))
    assert refused.status_code == 401 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["status"] == 401
    assert (await client.get("/api/v1/me", headers=bearer(second["token"]))).status_code == 200


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # one character changed
        lambda t: t[:-4],  # truncated
        lambda t: t + "x",  # extended
        lambda t: t.removeprefix("alliance_"),  # prefix dropped
        lambda t: "",
    ],
    ids=["changed", "truncated", "extended", "no-prefix", "empty"],
)
async def test_tampered_token_is_401(client: httpx.AsyncClient, store: Store, therapist: int, mangle) -> None:  # type: ignore[no-untyped-def]
    token = create_api_token(store, therapist).token
    response = await client.get("/api/v1/me", headers=bearer(mangle(token)))
    assert response.status_code == 401


async def test_other_schemes_and_bad_headers_are_401(client: httpx.AsyncClient, store: Store, therapist: int) -> None:
    token = create_api_token(store, therapist).token
    assert (await client.get("/api/v1/me", headers={"Authorization": f"Basic {token}"})).status_code == 401
    assert (await client.get("/api/v1/me", headers={"Authorization": "Bearer"})).status_code == 401
    assert (await client.get("/api/v1/me")).status_code == 401
    # A bad token is not rescued by a good session cookie: the header decides.
    await sign_in(client)
    assert (await client.get("/api/v1/me")).status_code == 200
    assert (await client.get("/api/v1/me", headers=bearer(token + "x"))).status_code == 401


async def test_tokens_are_scoped_to_their_therapist(app: FastAPI, store: Store, therapist: int) -> None:
    other = create_therapist(store, "olga@example.org")
    mine = create_api_token(store, therapist, "mine")
    theirs = create_api_token(store, other, "theirs")
    async with asgi_client(app) as client:
        listed = (await client.get("/api/v1/tokens", headers=bearer(mine.token))).json()
        assert [t["id"] for t in listed] == [mine.id]
        # Another therapist's token cannot be revoked (and its existence is not revealed).
        attempt = await client.delete(f"/api/v1/tokens/{theirs.id}", headers=bearer(mine.token))
        assert attempt.status_code == 404
        assert (await client.get("/api/v1/me", headers=bearer(theirs.token))).json()["id"] == other
        assert (await client.delete("/api/v1/tokens/999999", headers=bearer(mine.token))).status_code == 404
    # The operator (CLI) scope is unrestricted.
    assert revoke_api_token(store, theirs.id)


async def test_cookie_authenticated_api_writes_need_the_csrf_header(client: httpx.AsyncClient, therapist: int) -> None:
    await sign_in(client)
    assert (await client.post("/api/v1/tokens", json={"name": "x"})).status_code == 403
    page = await client.get("/")
    created = await client.post("/api/v1/tokens", json={"name": "x"}, headers={"X-CSRF-Token": csrf_from(page.text)})
    assert created.status_code == 201


async def test_a_revocation_made_elsewhere_reaches_a_running_server_within_the_cache_time(
    store: Store, therapist: int, settings: object
) -> None:
    import asyncio

    from alliance.app import create_app

    for ttl in (0.0, 3.0):
        app = create_app(settings.model_copy(update={"api_token_cache_seconds": ttl}), store=store)  # type: ignore[attr-defined]
        token = create_api_token(store, therapist, f"cli-{ttl}")
        async with asgi_client(app) as client:
            assert (await client.get("/api/v1/me", headers=bearer(token.token))).status_code == 200
            revoke_api_token(store, token.id)  # as `alliance tokens revoke` does, from another process
            answer = await client.get("/api/v1/me", headers=bearer(token.token))
            if ttl == 0:
                assert answer.status_code == 401  # no cache: refused at once
                continue
            assert answer.status_code == 200  # remembered for at most ttl seconds (README)
            await asyncio.sleep(ttl + 0.2)
            assert (await client.get("/api/v1/me", headers=bearer(token.token))).status_code == 401
