"""Clients, sessions and assignments over the JSON API."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from core.accounts import create_api_token
from core.store import Store
from tests.portal.feeds import Event, Feed, feed_server, soon

pytestmark = pytest.mark.anyio

NAME, EMAIL = "Anna Lindqvist", "anna.lindqvist@example.org"


@pytest.fixture
def feed() -> Iterator[Feed]:
    with feed_server() as f:
        f.serve(
            Event("weekly@test", soon(1, 17), "Session", rrule="FREQ=WEEKLY;COUNT=4"),
            Event("single@test", soon(2, 10), "Intake", attendees=("someone@example.org",)),
            Event("video@test", soon(3, 9), "Online https://us02web.zoom.us/j/123456789"),
        )
        yield f


@pytest.fixture
def auth(store: Store, therapist: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}


@pytest.fixture
async def synced(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> int:
    created = await client.post("/api/v1/connections", json={"provider": "ics", "source": feed.url}, headers=auth)
    connection_id: int = created.json()["id"]
    assert (await client.post(f"/api/v1/connections/{connection_id}/sync", headers=auth)).status_code == 200
    return connection_id


async def test_clients_show_names_only_when_revealed(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    created = await client.post(
        "/api/v1/clients",
        json={"name": NAME, "email": EMAIL, "timezone": "Europe/Berlin", "modality": "online"},
        headers=auth,
    )
    assert created.status_code == 201
    body = created.json()
    assert NAME not in created.text and EMAIL not in created.text
    assert body["details"] is None and not body["archived"] and len(body["code"]) == 4
    code = body["code"]

    listed = await client.get("/api/v1/clients", headers=auth)
    assert [c["code"] for c in listed.json()] == [code] and NAME not in listed.text
    revealed = (await client.get("/api/v1/clients", params={"reveal": "true"}, headers=auth)).json()
    assert revealed[0]["details"] == {
        "name": NAME,
        "email": EMAIL,
        "phone": None,
        "timezone": "Europe/Berlin",
        "modality": "online",
        "language": None,
    }
    one = await client.get(f"/api/v1/clients/{code.lower()}", headers=auth)  # codes are read case-insensitively
    assert one.status_code == 200 and one.json()["details"] is None
    assert (await client.get(f"/api/v1/clients/{code}?reveal=true", headers=auth)).json()["details"]["name"] == NAME


async def test_patch_changes_only_what_is_sent_and_archives(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    code = (await client.post("/api/v1/clients", json={"name": NAME, "phone": "+49 30 123"}, headers=auth)).json()[
        "code"
    ]
    patched = await client.patch(
        f"/api/v1/clients/{code}?reveal=true",
        json={"phone": None, "modality": "in_person", "language": "es"},
        headers=auth,
    )
    assert patched.status_code == 200
    assert patched.json()["details"] == {
        "name": NAME,
        "email": None,
        "phone": None,
        "timezone": None,
        "modality": "in_person",
        "language": "es",
    }
    archived = await client.patch(f"/api/v1/clients/{code}", json={"archived": True}, headers=auth)
    assert archived.json()["archived"] and archived.json()["details"] is None
    assert (await client.get("/api/v1/clients", headers=auth)).json() == []
    assert len((await client.get("/api/v1/clients?archived=true", headers=auth)).json()) == 1
    restored = await client.patch(f"/api/v1/clients/{code}", json={"archived": False}, headers=auth)
    assert not restored.json()["archived"]
    assert (await client.patch("/api/v1/clients/ZZZZ", json={"name": "x"}, headers=auth)).status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "not an address"}, "email"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"phone": "12"}, "phone"),
        ({"modality": "telepathy"}, "modality"),
        ({"language": "fr"}, "language"),
        ({"code": "K0O1"}, "code"),
        ({"nmae": "typo"}, "nmae"),
    ],
)
async def test_invalid_client_fields_are_422_naming_them(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, str], field: str
) -> None:
    answer = await client.post("/api/v1/clients", json=body, headers=auth)
    assert answer.status_code == 422, answer.text
    assert [e["name"] for e in answer.json()["errors"]] == [field]
    assert all(str(value) not in answer.json()["detail"] for value in body.values())


async def test_a_taken_code_is_409(client: httpx.AsyncClient, auth: dict[str, str]) -> None:
    assert (await client.post("/api/v1/clients", json={"code": "K7Q2"}, headers=auth)).status_code == 201
    assert (await client.post("/api/v1/clients", json={"code": "k7q2"}, headers=auth)).status_code == 409


async def test_assign_a_series_and_one_occurrence(client: httpx.AsyncClient, auth: dict[str, str], synced: int) -> None:
    code = (await client.post("/api/v1/clients", json={"name": NAME}, headers=auth)).json()["code"]
    series = await client.post(
        "/api/v1/assignments", json={"uid": "weekly@test", "client": code, "from": soon(0, 0).isoformat()}, headers=auth
    )
    assert series.status_code == 201, series.text
    assert series.json()["session"] is None
    assert series.json()["series"]["sessions_assigned"] == 4 and series.json()["series"]["client"] == code
    assert series.json()["series"]["from"].startswith(soon(0, 0).date().isoformat())

    single = await client.post(
        "/api/v1/assignments",
        json={"uid": "video@test", "client": code, "occurrence": soon(3, 9).isoformat(), "modality": "in_person"},
        headers=auth,
    )
    assert single.status_code == 201 and single.json()["series"] is None
    session = single.json()["session"]
    assert session["modality"] == "in_person" and session["source"] == "manual" and session["client"] == code

    listed = await client.get("/api/v1/sessions", params={"client": code}, headers=auth)
    assert len(listed.json()) == 5 and NAME not in listed.text
    assert all(s["client_details"] is None for s in listed.json())
    revealed = await client.get("/api/v1/sessions", params={"client": code, "reveal": "true"}, headers=auth)
    assert {s["client_details"]["name"] for s in revealed.json()} == {NAME}
    windowed = await client.get(
        "/api/v1/sessions", params={"from": soon(3, 0).isoformat(), "to": soon(4, 0).isoformat()}, headers=auth
    )
    assert [s["uid"] for s in windowed.json()] == ["video@test"]

    one = await client.get(f"/api/v1/sessions/{session['id']}", headers=auth)
    assert one.status_code == 200 and one.json() == session
    changed = await client.patch(f"/api/v1/sessions/{session['id']}", json={"modality": "online"}, headers=auth)
    assert changed.status_code == 200 and changed.json()["modality"] == "online"
    occurrence = (await client.get(f"/api/v1/occurrences/{session['occurrence_id']}", headers=auth)).json()
    assert occurrence["session_id"] == session["id"]


async def test_assignment_errors(client: httpx.AsyncClient, auth: dict[str, str], synced: int, feed: Feed) -> None:
    code = (await client.post("/api/v1/clients", json={}, headers=auth)).json()["code"]

    async def assign(**body: str) -> httpx.Response:
        return await client.post("/api/v1/assignments", json=body, headers=auth)

    assert (await assign(uid="nope@test", client=code)).status_code == 404
    assert (await assign(uid="single@test", client="ZZZZ")).status_code == 404
    missing = await assign(uid="weekly@test", client=code, occurrence="2001-01-01T00:00:00Z")
    assert missing.status_code == 404
    both = await assign(uid="weekly@test", client=code, occurrence=soon(1, 17).isoformat(), **{"from": "2026-01-01"})
    assert both.status_code == 422 and [e["name"] for e in both.json()["errors"]] == ["from"]
    series_modality = await assign(uid="weekly@test", client=code, modality="online")
    assert series_modality.status_code == 422 and [e["name"] for e in series_modality.json()["errors"]] == ["modality"]
    bad_instant = await assign(uid="weekly@test", client=code, occurrence="2026-02-30")
    assert bad_instant.status_code == 422 and [e["name"] for e in bad_instant.json()["errors"]] == ["occurrence"]

    # The same UID in a second connection: the therapist must say which.
    await client.post("/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "copy"}, headers=auth)
    copy_id = (await client.get("/api/v1/connections", headers=auth)).json()[1]["id"]
    await client.post(f"/api/v1/connections/{copy_id}/sync", headers=auth)
    ambiguous = await assign(uid="single@test", client=code)
    assert ambiguous.status_code == 409 and sorted(ambiguous.json()["connections"]) == ["127.0.0.1", "copy"]
    assert (await assign(uid="single@test", client=code, connection="copy")).status_code == 201
    assert (await assign(uid="single@test", client=code, connection=str(copy_id))).status_code == 201
    assert (await assign(uid="single@test", client=code, connection="9" * 40)).status_code == 404

    await client.patch(f"/api/v1/clients/{code}", json={"archived": True}, headers=auth)
    archived = await assign(uid="single@test", client=code, connection="copy")
    assert archived.status_code == 409 and "archived" in archived.json()["detail"]

    assert (await client.get("/api/v1/sessions", params={"client": "ZZZZ"}, headers=auth)).status_code == 404
    assert (await client.get("/api/v1/sessions/999999", headers=auth)).status_code == 404
    assert (await client.patch("/api/v1/sessions/999999", json={"modality": "online"}, headers=auth)).status_code == 404


async def test_a_client_email_turns_attended_events_into_sessions(
    client: httpx.AsyncClient, auth: dict[str, str], synced: int
) -> None:
    created = await client.post("/api/v1/clients", json={"email": "Someone@Example.org"}, headers=auth)
    [session] = (await client.get("/api/v1/sessions", params={"client": created.json()["code"]}, headers=auth)).json()
    assert session["uid"] == "single@test" and session["source"] == "rule"
