"""Tenant isolation of the whole JSON API: therapist A never reads, changes or learns of B's rows.

Every resource of B answers A exactly as a resource that does not exist (404, never 403, which
would confirm it exists), and no listing of A carries one of B's rows. Extends the tokens' own
scoping test (test_api_tokens.py) to connections, occurrences, clients, sessions and assignments.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI

from core.accounts import create_api_token, create_therapist
from core.store import Store
from tests.portal.conftest import asgi_client
from tests.portal.feeds import Event, feed_server, soon

pytestmark = pytest.mark.anyio


async def test_therapist_a_gets_404_for_every_resource_of_b(app: FastAPI, store: Store) -> None:
    a = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'a@example.org'), 'a').token}"}
    b = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'b@example.org'), 'b').token}"}
    with feed_server() as feed:
        feed.serve(
            Event("series@b", soon(1, 17), "B's client Jonas", rrule="FREQ=WEEKLY;COUNT=3"),
            Event("single@b", soon(2, 9), "B's intake", attendees=("jonas@example.org",)),
        )
        async with asgi_client(app) as client:
            # B's world: a connection with occurrences, a client, sessions (manual and by rule).
            made = await client.post(
                "/api/v1/connections", json={"provider": "ics", "source": feed.url, "name": "b-cal"}, headers=b
            )
            b_connection = made.json()["id"]
            assert (await client.post(f"/api/v1/connections/{b_connection}/sync", headers=b)).status_code == 200
            b_occurrence = (await client.get("/api/v1/occurrences", headers=b)).json()[0]["id"]
            b_client = (
                await client.post("/api/v1/clients", json={"name": "Jonas", "email": "jonas@example.org"}, headers=b)
            ).json()["code"]
            series = await client.post("/api/v1/assignments", json={"uid": "series@b", "client": b_client}, headers=b)
            assert series.status_code == 201
            b_session = (await client.get("/api/v1/sessions", headers=b)).json()[0]["id"]

            # A has rows of its own (a client), so "empty because nothing exists" proves nothing by accident.
            a_client = (await client.post("/api/v1/clients", json={"name": "Ana's client"}, headers=a)).json()["code"]

            statuses = {
                "GET connection": await client.get(f"/api/v1/connections/{b_connection}", headers=a),
                "PATCH connection": await client.patch(
                    f"/api/v1/connections/{b_connection}", json={"name": "mine"}, headers=a
                ),
                "sync connection": await client.post(f"/api/v1/connections/{b_connection}/sync", headers=a),
                "DELETE connection": await client.delete(f"/api/v1/connections/{b_connection}", headers=a),
                "GET occurrence": await client.get(f"/api/v1/occurrences/{b_occurrence}", headers=a),
                "GET client": await client.get(f"/api/v1/clients/{b_client}?reveal=true", headers=a),
                "PATCH client": await client.patch(f"/api/v1/clients/{b_client}", json={"archived": True}, headers=a),
                "GET session": await client.get(f"/api/v1/sessions/{b_session}?reveal=true", headers=a),
                "PATCH session": await client.patch(
                    f"/api/v1/sessions/{b_session}", json={"modality": "online"}, headers=a
                ),
                "sessions of B's client": await client.get("/api/v1/sessions", params={"client": b_client}, headers=a),
                "assign B's event to A's client": await client.post(
                    "/api/v1/assignments", json={"uid": "series@b", "client": a_client}, headers=a
                ),
                "assign B's event by B's connection id": await client.post(
                    "/api/v1/assignments",
                    json={"uid": "series@b", "client": a_client, "connection": str(b_connection)},
                    headers=a,
                ),
                "assign with B's client code": await client.post(
                    "/api/v1/assignments", json={"uid": "series@b", "client": b_client}, headers=a
                ),
            }
            assert {name: r.status_code for name, r in statuses.items()} == dict.fromkeys(statuses, 404)
            for response in statuses.values():
                assert "Jonas" not in response.text and feed.secret not in response.text

            # No listing of A holds anything of B's.
            wide = {"from": "2000-01-01", "to": "2100-01-01"}
            assert (await client.get("/api/v1/connections", headers=a)).json() == []
            assert (
                await client.get("/api/v1/occurrences", params={**wide, "include_cancelled": "true"}, headers=a)
            ).json() == []
            assert [c["code"] for c in (await client.get("/api/v1/clients?archived=true", headers=a)).json()] == [
                a_client
            ]
            assert (await client.get("/api/v1/sessions", params=wide, headers=a)).json() == []
            assert [t["name"] for t in (await client.get("/api/v1/tokens", headers=a)).json()] == ["a"]

            # Nothing A tried changed B's rows.
            b_view = (await client.get(f"/api/v1/connections/{b_connection}", headers=b)).json()
            assert b_view["name"] == "b-cal"
            assert not (await client.get(f"/api/v1/clients/{b_client}", headers=b)).json()["archived"]
            b_sessions = (await client.get("/api/v1/sessions", headers=b)).json()
            assert sorted(s["source"] for s in b_sessions) == ["rule", "series", "series", "series"]
            assert {s["modality"] for s in b_sessions} == {"in_person"}
