"""Sign-in as a browser does it: setup link, password, login, cookie, page, logout; CSRF and limits."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from http.cookies import SimpleCookie
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from alliance.app import create_app
from core.accounts import create_setup_token, create_therapist, set_password, start_session
from core.store import Store
from tests.portal.conftest import PASSWORD, asgi_client, csrf_from, make_settings, sign_in

pytestmark = pytest.mark.anyio


def _set_cookie_header(response: httpx.Response, name: str) -> str:
    headers = [h for h in response.headers.get_list("set-cookie") if h.startswith(f"{name}=")]
    assert len(headers) == 1, headers
    return headers[0]


def _cookie_attributes(header: str) -> dict[str, str]:
    cookie = SimpleCookie()
    cookie.load(header)
    morsel = next(iter(cookie.values()))
    return {k.lower(): str(v) for k, v in morsel.items() if v}


async def test_setup_link_password_login_page_logout(
    client: httpx.AsyncClient, store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    therapist_id = create_therapist(store, "Bea@Example.org", display_name="Bea")
    token = create_setup_token(store, therapist_id)

    # Not signed in: the page sends the browser to /login.
    anonymous = await client.get("/")
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/login"

    form = await client.get(f"/setup-password/{token}")
    assert form.status_code == 200 and "Choose a password" in form.text
    assert form.headers["referrer-policy"] == "no-referrer"
    mismatch = await client.post(
        f"/setup-password/{token}",
        data={"password": PASSWORD, "confirm": PASSWORD + "x", "csrf_token": csrf_from(form.text)},
    )
    assert mismatch.status_code == 400 and "differ" in mismatch.text
    short = await client.post(
        f"/setup-password/{token}", data={"password": "short", "confirm": "short", "csrf_token": csrf_from(form.text)}
    )
    assert short.status_code == 400 and "at least 10" in short.text
    done = await client.post(
        f"/setup-password/{token}",
        data={"password": PASSWORD, "confirm": PASSWORD, "csrf_token": csrf_from(form.text)},
    )
    assert done.status_code == 303 and done.headers["location"] == "/login?setup=done"
    # Single use: the link is dead now, for showing and for posting.
    assert (await client.get(f"/setup-password/{token}")).status_code == 404
    again = await client.post(
        f"/setup-password/{token}",
        data={"password": "another password!", "confirm": "another password!", "csrf_token": csrf_from(form.text)},
    )
    assert again.status_code == 404

    login = await sign_in(client, "bea@example.org", PASSWORD)  # e-mail matched case-insensitively
    assert login.status_code == 303 and login.headers["location"] == "/"
    attributes = _cookie_attributes(_set_cookie_header(login, "alliance_session"))
    assert attributes["httponly"] and attributes["samesite"].lower() == "lax" and attributes["path"] == "/"
    assert "secure" not in attributes  # development runs on plain http
    session_cookie = client.cookies["alliance_session"]

    page = await client.get("/")
    assert page.status_code == 200 and "Your calendars" in page.text and "Bea" in page.text
    assert page.headers["cache-control"] == "no-store"

    logout = await client.post("/logout", data={"csrf_token": csrf_from(page.text)})
    assert logout.status_code == 303 and logout.headers["location"] == "/login"
    # The old cookie is dead server-side, not merely deleted from this browser.
    client.cookies.set("alliance_session", session_cookie)
    assert (await client.get("/")).status_code == 303
    assert (await client.get("/api/v1/me")).status_code == 401

    # Everything the service logged (httpx is the test's own client and logs its URLs).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    for secret in (PASSWORD, token, session_cookie, "bea@example.org", "Bea@Example.org"):
        assert secret not in logged


async def test_session_cookie_is_secure_in_production(store: Store, tmp_path: Path, therapist: int) -> None:
    app = create_app(make_settings(tmp_path / "prod", env="production"), store=store)
    async with asgi_client(app, base_url="https://testserver") as client:
        login = await sign_in(client)
        assert login.status_code == 303
        attributes = _cookie_attributes(_set_cookie_header(login, "alliance_session"))
        assert attributes["secure"] and attributes["httponly"] and attributes["samesite"].lower() == "lax"
        page = await client.get("/")
        assert page.status_code == 200
        assert page.headers["strict-transport-security"].startswith("max-age=")


async def test_form_posts_without_csrf_token_are_refused(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    await client.get("/login")  # the pre-session cookie is there, the token is not sent
    no_token = await client.post("/login", data={"email": "ana@example.org", "password": PASSWORD})
    assert no_token.status_code == 403 and "alliance_session" not in client.cookies
    wrong = await client.post("/login", data={"email": "ana@example.org", "password": PASSWORD, "csrf_token": "x"})
    assert wrong.status_code == 403

    token = create_setup_token(store, therapist)
    setup = await client.post(f"/setup-password/{token}", data={"password": PASSWORD, "confirm": PASSWORD})
    assert setup.status_code == 403
    assert (await client.get(f"/setup-password/{token}")).status_code == 200  # not consumed

    assert (await sign_in(client)).status_code == 303
    assert (await client.post("/logout")).status_code == 403
    # A token from another browser's session does not fit this one.
    async with asgi_client(client._transport.app) as other:  # type: ignore[attr-defined]
        await sign_in(other)
        foreign = csrf_from((await other.get("/")).text)
    assert (await client.post("/logout", data={"csrf_token": foreign})).status_code == 403
    assert (await client.get("/")).status_code == 200  # still signed in


async def test_wrong_password_and_unknown_account_look_the_same(client: httpx.AsyncClient, therapist: int) -> None:
    wrong = await sign_in(client, password="not the password")
    unknown = await sign_in(client, email="nobody@example.org")
    assert wrong.status_code == unknown.status_code == 400
    assert "Wrong e-mail address or password" in wrong.text and "Wrong e-mail address or password" in unknown.text
    assert "ana@example.org" not in wrong.text and "nobody@example.org" not in unknown.text
    assert "alliance_session" not in client.cookies


async def test_login_is_rate_limited_per_account(app: FastAPI, therapist: int) -> None:
    # Five failures from five addresses: the account is locked whatever the address.
    for i in range(5):
        async with asgi_client(app, address=f"10.0.0.{i + 1}") as c:
            assert (await sign_in(c, password=f"guess {i}")).status_code == 400
    async with asgi_client(app, address="10.0.0.99") as c:
        blocked = await sign_in(c)  # even the right password
        assert blocked.status_code == 429
        assert 0 < int(blocked.headers["retry-after"]) <= 15 * 60
        assert "alliance_session" not in c.cookies
    # Another account from the same addresses is not affected.
    create_therapist(app.state.store, "carl@example.org")
    set_password(app.state.store, create_therapist(app.state.store, "dora@example.org"), PASSWORD)
    async with asgi_client(app, address="10.0.0.1") as c:
        assert (await sign_in(c, "dora@example.org")).status_code == 303


async def test_login_is_rate_limited_per_address(app: FastAPI, therapist: int) -> None:
    policy = app.state.login_policy
    async with asgi_client(app, address="192.0.2.7") as c:
        for i in range(policy.max_per_address):
            assert (await sign_in(c, email=f"guess{i}@example.org")).status_code == 400
        blocked = await sign_in(c)  # a fresh account, the right password, the same address
        assert blocked.status_code == 429 and int(blocked.headers["retry-after"]) > 0
    async with asgi_client(app, address="192.0.2.8") as c:
        assert (await sign_in(c)).status_code == 303


async def test_unknown_or_expired_session_cookie(client: httpx.AsyncClient, store: Store, therapist: int) -> None:
    client.cookies.set("alliance_session", "not-a-session")
    assert (await client.get("/")).status_code == 303
    assert (await client.get("/api/v1/me")).status_code == 401

    expired = start_session(store, therapist, now=datetime.now(UTC) - timedelta(days=2))
    client.cookies.set("alliance_session", expired)
    page = await client.get("/", headers={"accept": "text/html"})
    assert page.status_code == 303 and page.headers["location"] == "/login"
    api = await client.get("/api/v1/me")
    assert api.status_code == 401 and api.headers["content-type"] == "application/problem+json"
    assert api.headers["www-authenticate"].startswith("Bearer")

    live = start_session(store, therapist)
    client.cookies.set("alliance_session", live)
    assert (await client.get("/api/v1/me")).json()["id"] == therapist


async def test_expired_setup_link_is_refused(client: httpx.AsyncClient, store: Store, therapist: int) -> None:
    old = create_setup_token(store, therapist, now=datetime.now(UTC) - timedelta(hours=25))
    assert (await client.get(f"/setup-password/{old}")).status_code == 404
    # A new link replaces the previous one.
    first = create_setup_token(store, therapist)
    second = create_setup_token(store, therapist)
    assert (await client.get(f"/setup-password/{first}")).status_code == 404
    assert (await client.get(f"/setup-password/{second}")).status_code == 200


async def test_login_redirects_only_within_the_site(client: httpx.AsyncClient, therapist: int) -> None:
    assert (await client.get("/api/v1/me")).status_code == 401
    form = await client.get("/login?next=//evil.example/x")
    assert 'value="/"' in form.text
    login = await client.post(
        "/login",
        data={
            "email": "ana@example.org",
            "password": PASSWORD,
            "csrf_token": csrf_from(form.text),
            "next": "//evil.example",
        },
    )
    assert login.headers["location"] == "/"
