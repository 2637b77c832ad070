"""Session notes over the JSON API and the therapist pages, end to end on both databases."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from alliance.app import create_app
from alliance.settings import Settings
from core.accounts import create_api_token, create_therapist
from core.audit import AuditEntry
from core.crypto import Keyring, MasterKeys, generate_key_text
from core.store import Store
from tests.portal.conftest import asgi_client, csrf_from, sign_in
from tests.portal.feeds import Event, Feed, feed_server, soon

pytestmark = pytest.mark.anyio

SECRET = "She described the panic attack on the Westbrook bridge"


@pytest.fixture
def feed() -> Iterator[Feed]:
    with feed_server() as f:
        f.serve(Event("weekly@test", soon(1, 17), "Session", rrule="FREQ=WEEKLY;COUNT=2"))
        yield f


@pytest.fixture
def auth(store: Store, therapist: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}


async def _session(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> int:
    made = await client.post("/api/v1/connections", json={"provider": "ics", "source": feed.url}, headers=auth)
    assert (await client.post(f"/api/v1/connections/{made.json()['id']}/sync", headers=auth)).status_code == 200
    code = (await client.post("/api/v1/clients", json={"name": "Client"}, headers=auth)).json()["code"]
    assigned = await client.post("/api/v1/assignments", json={"uid": "weekly@test", "client": code}, headers=auth)
    assert assigned.status_code == 201
    session_id: int = (await client.get("/api/v1/sessions", headers=auth)).json()[0]["id"]
    return session_id


@pytest.fixture
async def session_id(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> int:
    return await _session(client, auth, feed)


async def test_create_list_get_version_sign(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: int, store: Store
) -> None:
    base = f"/api/v1/sessions/{session_id}/notes"
    assert (await client.get(base, headers=auth)).json() == []
    created = await client.post(base, json={"text": SECRET}, headers=auth)
    assert created.status_code == 201
    note = created.json()
    assert (note["kind"], note["version"], note["text"], note["signed"]) == ("progress", 1, SECRET, False)

    again = await client.post(f"{base}/{note['id']}/versions", json={"text": "v2", "expected_version": 1}, headers=auth)
    assert again.status_code == 201 and again.json()["version"] == 2
    stale = await client.post(f"{base}/{note['id']}/versions", json={"text": "v3", "expected_version": 1}, headers=auth)
    assert stale.status_code == 409 and stale.headers["content-type"] == "application/problem+json"
    assert "v3" not in stale.text

    detail = (await client.get(f"{base}/{note['id']}", headers=auth)).json()
    assert [(v["version"], v["text"]) for v in detail["history"]] == [(1, SECRET), (2, "v2")]

    signed = await client.post(f"{base}/{note['id']}/sign", headers=auth)
    assert signed.status_code == 200 and signed.json()["signed"] and signed.json()["text"] == "v2"
    locked = await client.post(f"{base}/{note['id']}/versions", json={"text": "v3"}, headers=auth)
    assert locked.status_code == 409

    listing = (await client.get(base, headers=auth)).json()
    assert [(n["id"], n["version"], n["signed"]) for n in listing] == [(note["id"], 2, True)]
    with store.session() as s:
        origins = {e.origin for e in s.query(AuditEntry)}
    assert origins == {"api 127.0.0.1"}


async def test_size_limit_is_a_413_and_bad_input_a_422(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}/notes"
    too_large = await client.post(base, json={"text": "x" * (64 * 1024 + 1)}, headers=auth)
    assert too_large.status_code == 413
    assert too_large.json()["detail"] == "A note may hold at most 64 KB of text."
    assert (await client.post(base, json={"text": "x" * (64 * 1024)}, headers=auth)).status_code == 201
    blank = await client.post(base, json={"text": "  "}, headers=auth)
    assert blank.status_code == 422 and blank.json()["errors"][0]["name"] == "text"
    assert (await client.post(base, json={"text": "t", "kind": "diary"}, headers=auth)).status_code == 422
    assert (await client.get("/api/v1/sessions/999999/notes", headers=auth)).status_code == 404
    assert len((await client.get(base, headers=auth)).json()) == 1


async def test_therapist_a_gets_404_for_every_note_of_b(app: FastAPI, store: Store, feed: Feed) -> None:
    a = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'a@example.org'), 'a').token}"}
    b = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'b@example.org'), 'b').token}"}
    async with asgi_client(app) as client:
        b_session = await _session(client, b, feed)
        base = f"/api/v1/sessions/{b_session}/notes"
        progress = (await client.post(base, json={"text": SECRET}, headers=b)).json()["id"]
        process = (await client.post(base, json={"text": SECRET, "kind": "process"}, headers=b)).json()["id"]
        answers = [
            await client.get(base, headers=a),
            await client.post(base, json={"text": "planted"}, headers=a),
        ]
        for note_id in (progress, process):
            answers += [
                await client.get(f"{base}/{note_id}", headers=a),
                await client.post(f"{base}/{note_id}/versions", json={"text": "hijack"}, headers=a),
                await client.post(f"{base}/{note_id}/sign", headers=a),
            ]
        assert [r.status_code for r in answers] == [404] * len(answers)
        assert all(SECRET not in r.text for r in answers)
        # B still sees both notes, unchanged and unsigned.
        mine = (await client.get(base, headers=b)).json()
        assert [(n["text"], n["version"], n["signed"]) for n in mine] == [(SECRET, 1, False)] * 2


async def test_the_notes_page_writes_edits_and_signs_with_csrf(
    app: FastAPI, store: Store, therapist: int, auth: dict[str, str], feed: Feed
) -> None:
    async with asgi_client(app) as client:
        session_id = await _session(client, auth, feed)
        await sign_in(client)
        url = f"/sessions/{session_id}/notes"
        page = await client.get(url, headers={"accept": "text/html"})
        assert page.status_code == 200 and "New note" in page.text
        token = csrf_from(page.text)

        forged = await client.post(url, data={"text": "no token", "kind": "progress"})
        assert forged.status_code == 403
        markdown = "# Heading\n\n*calmer* <script>alert(1)</script>"
        made = await client.post(url, data={"text": markdown, "kind": "progress", "csrf_token": token})
        assert made.status_code == 303 and made.headers["location"].startswith(url)
        page = await client.get(url)
        assert "<h1>Heading</h1>" in page.text and "<em>calmer</em>" in page.text
        assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;" in page.text
        note_id = int(re.search(r'id="note-(\d+)"', page.text).group(1))  # type: ignore[union-attr]

        edited = await client.post(
            f"{url}/{note_id}/versions", data={"text": "second", "expected_version": "1", "csrf_token": token}
        )
        assert edited.status_code == 303
        too_large = await client.post(url, data={"text": "y" * 70_000, "kind": "progress", "csrf_token": token})
        assert too_large.status_code == 413 and "at most 64 KB" in too_large.text
        signed = await client.post(f"{url}/{note_id}/sign", data={"csrf_token": token})
        assert signed.status_code == 303
        page = await client.get(url)
        assert "version 2" in page.text and "signed" in page.text and "Save new version" not in page.text
        assert "Earlier versions (1)" in page.text and "<h1>Heading</h1>" in page.text  # version 1 kept

        assert (await client.get("/sessions/999999/notes", headers={"accept": "text/html"})).status_code == 404


async def test_pages_need_a_sign_in(client: httpx.AsyncClient, session_id: int) -> None:
    answer = await client.get(f"/sessions/{session_id}/notes", headers={"accept": "text/html"})
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login")


async def test_export_over_the_api_json_and_html(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: int
) -> None:
    base = f"/api/v1/sessions/{session_id}/notes"
    await client.post(base, json={"text": SECRET}, headers=auth)
    await client.post(base, json={"text": "process", "kind": "process"}, headers=auth)
    code = (await client.get("/api/v1/clients", headers=auth)).json()[0]["code"]
    bundle = await client.post(f"/api/v1/clients/{code}/export", json={}, headers=auth)
    assert bundle.status_code == 200 and bundle.headers["cache-control"] == "no-store"
    notes = bundle.json()["sessions"][0]["notes"]
    assert [n["kind"] for n in notes] == ["progress"]
    page = await client.post(f"/api/v1/clients/{code}/export?format=html", json={}, headers=auth)
    assert page.headers["content-type"].startswith("text/html") and SECRET in page.text
    refused = await client.post(f"/api/v1/clients/{code}/export", json={"process_notes_reason": " "}, headers=auth)
    assert refused.status_code == 422 and refused.json()["errors"][0]["name"] == "process_notes_reason"
    disclosed = await client.post(
        f"/api/v1/clients/{code}/export", json={"process_notes_reason": "court order"}, headers=auth
    )
    assert {n["kind"] for s in disclosed.json()["sessions"] for n in s["notes"]} == {"progress", "process"}
    assert (await client.post("/api/v1/clients/ZZZZ/export", json={}, headers=auth)).status_code == 404


async def test_a_wrong_master_key_refuses_to_serve_notes(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: int, store: Store, settings: Settings
) -> None:
    created = await client.post(f"/api/v1/sessions/{session_id}/notes", json={"text": SECRET}, headers=auth)
    assert created.status_code == 201
    # A process started with another master key (Store.open would refuse it at start; this one
    # skipped the check): every note answer is a clear 503, never garbage or a 500.
    wrong = Store(store.engine, keyring=Keyring(MasterKeys.from_env_value(generate_key_text())))
    async with asgi_client(create_app(settings, store=wrong)) as other:
        listing = await other.get(f"/api/v1/sessions/{session_id}/notes", headers=auth)
        one = await other.get(f"/api/v1/sessions/{session_id}/notes/{created.json()['id']}", headers=auth)
        write = await other.post(f"/api/v1/sessions/{session_id}/notes", json={"text": "new"}, headers=auth)
    for answer in (listing, one, write):
        assert answer.status_code == 503, answer.text
        assert answer.json()["detail"] == "Notes are unavailable: the master key does not match."
        assert SECRET not in answer.text


async def test_bulk_create_writes_all_notes_or_none(
    client: httpx.AsyncClient, auth: dict[str, str], session_id: int, store: Store, app: FastAPI
) -> None:
    base = f"/api/v1/sessions/{session_id}/notes"
    ok = {"session_id": session_id, "text": "fine"}
    too_large = await client.post(
        "/api/v1/notes/bulk",
        json={"notes": [ok, {"session_id": session_id, "text": "x" * (64 * 1024 + 1)}]},
        headers=auth,
    )
    assert too_large.status_code == 413 and too_large.json()["detail"].startswith("Note 2: a note may hold at most")
    unknown = await client.post(
        "/api/v1/notes/bulk", json={"notes": [ok, {"session_id": 999999, "text": "x"}]}, headers=auth
    )
    assert unknown.status_code == 404 and "Note 2: no session with id 999999; nothing was written" in unknown.text
    blank = await client.post(
        "/api/v1/notes/bulk", json={"notes": [{"session_id": session_id, "text": " "}]}, headers=auth
    )
    assert blank.status_code == 422
    assert (await client.get(base, headers=auth)).json() == []  # nothing half-written

    notes = [{"session_id": session_id, "text": f"{SECRET} {i}"} for i in range(3)]
    notes.append({"session_id": session_id, "text": "process", "kind": "process"})
    created = await client.post("/api/v1/notes/bulk", json={"notes": notes}, headers=auth)
    assert created.status_code == 201, created.text
    assert [(n["kind"], n["version"]) for n in created.json()] == [("progress", 1)] * 3 + [("process", 1)]
    assert SECRET not in created.text  # the answer does not echo the texts
    listing = (await client.get(base, headers=auth)).json()
    assert [(n["id"], n["text"]) for n in listing] == [
        (c["id"], n["text"]) for c, n in zip(created.json(), notes, strict=True)
    ]
    with store.session() as s:
        creates = [
            e.target_id
            for e in s.query(AuditEntry).filter(AuditEntry.action == "create", AuditEntry.target_kind == "note")
        ]
    assert creates == [c["id"] for c in created.json()]

    # Another therapist's bulk request naming this session: a 404, nothing written.
    other = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'z@example.org'), 'z').token}"}
    planted = await client.post(
        "/api/v1/notes/bulk", json={"notes": [{"session_id": session_id, "text": "x"}]}, headers=other
    )
    assert planted.status_code == 404
    assert len((await client.get(base, headers=auth)).json()) == 4
