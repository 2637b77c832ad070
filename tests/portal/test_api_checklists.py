"""Checklists over the JSON API: templates and versions, answers per session, the S2 flag, isolation."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI

from core.accounts import create_api_token, create_therapist
from core.store import Store
from tests.portal.conftest import asgi_client
from tests.portal.feeds import Event, Feed, feed_server, soon

pytestmark = pytest.mark.anyio

LOCATION = "Rua Imaginaria 9, Porto; callback +351 912 000 111"


@pytest.fixture
def feed() -> Iterator[Feed]:
    with feed_server() as f:
        f.serve(Event("weekly@test", soon(1, 17), "Session", rrule="FREQ=WEEKLY;COUNT=3"))
        yield f


@pytest.fixture
def auth(store: Store, therapist: int) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}


async def _sessions(client: httpx.AsyncClient, auth: dict[str, str], feed: Feed) -> list[int]:
    made = await client.post("/api/v1/connections", json={"provider": "ics", "source": feed.url}, headers=auth)
    assert (await client.post(f"/api/v1/connections/{made.json()['id']}/sync", headers=auth)).status_code == 200
    code = (await client.post("/api/v1/clients", json={"modality": "online"}, headers=auth)).json()["code"]
    assigned = await client.post(
        "/api/v1/assignments", json={"uid": "weekly@test", "client": code, "from": "2000-01-01"}, headers=auth
    )
    assert assigned.status_code == 201
    return [s["id"] for s in (await client.get("/api/v1/sessions", headers=auth)).json()]


async def test_templates_start_at_version_1_and_an_edit_adds_a_version(
    client: httpx.AsyncClient, auth: dict[str, str]
) -> None:
    listed = await client.get("/api/v1/checklists/templates", headers=auth)
    assert listed.status_code == 200
    assert [(t["phase"], t["version"], t["current"]) for t in listed.json()] == [
        ("pre", 1, True),
        ("start", 1, True),
        ("post", 1, True),
    ]
    pre = listed.json()[0]
    assert [i["key"] for i in pre["items"]][:2] == ["T1", "T2"]

    items = [*pre["items"][:3], {"key": "T12", "text": "Glass of water ready."}]
    created = await client.post("/api/v1/checklists/templates", json={"phase": "pre", "items": items}, headers=auth)
    assert created.status_code == 201
    assert (created.json()["version"], created.json()["current"]) == (2, True)
    assert [i["key"] for i in created.json()["items"]] == ["T1", "T2", "T3", "T12"]
    old = await client.get(f"/api/v1/checklists/templates/{pre['id']}", headers=auth)
    assert old.json()["current"] is False and len(old.json()["items"]) == 11
    every = await client.get("/api/v1/checklists/templates?phase=pre&all_versions=true", headers=auth)
    assert [t["version"] for t in every.json()] == [1, 2]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"phase": "pre", "items": [{"key": "A", "text": "a"}, {"key": "a", "text": "b"}]}, "items.1.key"),
        ({"phase": "start", "items": [{"key": "S1", "text": "Identity."}]}, "items"),
        ({"phase": "pre", "items": [{"key": "9x", "text": "a"}]}, "items.0.key"),
        ({"phase": "later", "items": [{"key": "A", "text": "a"}]}, "phase"),
    ],
)
async def test_a_bad_template_is_a_422_naming_the_field(
    client: httpx.AsyncClient, auth: dict[str, str], body: dict[str, object], field: str
) -> None:
    response = await client.post("/api/v1/checklists/templates", json=body, headers=auth)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert field in [e["name"] for e in response.json()["errors"]]


async def test_answering_a_session_list_and_the_location_flag(
    client: httpx.AsyncClient, auth: dict[str, str], feed: Feed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    first, second, _ = await _sessions(client, auth, feed)
    lists = (await client.get(f"/api/v1/sessions/{first}/checklists", headers=auth)).json()
    assert lists["online"] and lists["first_session"]
    assert [r["phase"] for r in lists["lists"]] == ["pre", "start", "post"]
    assert [(f["key"], f["phase"]) for f in lists["flags"]] == [("S2", "start")]
    start_keys = [s["item"]["key"] for s in lists["lists"][1]["items"]]
    assert start_keys == ["S1", "S2", "S3", "S4", "S5", "S6", "S7"]
    second_keys = [
        s["item"]["key"]
        for s in (await client.get(f"/api/v1/sessions/{second}/checklists/start", headers=auth)).json()["items"]
    ]
    assert "S7" not in second_keys

    flags = (await client.get("/api/v1/checklists/flags", headers=auth)).json()
    assert {f["session_id"] for f in flags} >= {first, second}
    before = await client.get("/api/v1/checklists/flags", params={"to": "2001-01-01"}, headers=auth)
    assert before.status_code == 200 and before.json() == []
    backwards = await client.get(
        "/api/v1/checklists/flags", params={"from": "2030-01-02", "to": "2030-01-01"}, headers=auth
    )
    assert backwards.status_code == 422 and backwards.json()["errors"][0]["name"] == "to"

    missing_text = await client.post(
        f"/api/v1/sessions/{first}/checklists/start", json={"answers": [{"key": "S2", "status": "done"}]}, headers=auth
    )
    assert missing_text.status_code == 422 and missing_text.json()["errors"][0]["name"] == "answers.0.text"
    no_reason = await client.post(
        f"/api/v1/sessions/{first}/checklists/pre", json={"answers": [{"key": "T1", "status": "skipped"}]}, headers=auth
    )
    assert no_reason.status_code == 422 and no_reason.json()["errors"][0]["name"] == "answers.0.reason"

    done = await client.post(
        f"/api/v1/sessions/{first}/checklists/start",
        json={
            "answers": [
                {"key": "S1", "status": "done"},
                {"key": "S2", "status": "done", "text": LOCATION},
                {"key": "S7", "status": "skipped", "reason": "Consent signed on paper last week"},
            ]
        },
        headers=auth,
    )
    assert done.status_code == 200
    run = done.json()
    assert run["started"] and run["template_version"] == 1 and not run["complete"]
    answers = {s["item"]["key"]: s["answer"] for s in run["items"] if s["answer"]}
    assert answers["S2"]["text"] == LOCATION and answers["S7"]["reason"] == "Consent signed on paper last week"
    after = (await client.get(f"/api/v1/sessions/{first}/checklists", headers=auth)).json()
    assert after["flags"] == []
    # The place, the number and the reason never reach a log line.
    assert "Porto" not in caplog.text and "912 000 111" not in caplog.text and "paper" not in caplog.text
    assert "checklist run" in caplog.text  # the run was logged, by id
    assert first not in {f["session_id"] for f in (await client.get("/api/v1/checklists/flags", headers=auth)).json()}


async def test_therapist_a_gets_404_for_b_sessions_and_templates(app: FastAPI, store: Store, feed: Feed) -> None:
    a = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'a@example.org'), 'a').token}"}
    b = {"Authorization": f"Bearer {create_api_token(store, create_therapist(store, 'b@example.org'), 'b').token}"}
    async with asgi_client(app) as client:
        b_session = (await _sessions(client, b, feed))[0]
        await client.post(
            f"/api/v1/sessions/{b_session}/checklists/start",
            json={"answers": [{"key": "S2", "status": "done", "text": LOCATION}]},
            headers=b,
        )
        b_template = (await client.get("/api/v1/checklists/templates", headers=b)).json()[0]["id"]
        statuses = {
            "list": await client.get(f"/api/v1/sessions/{b_session}/checklists", headers=a),
            "one": await client.get(f"/api/v1/sessions/{b_session}/checklists/start", headers=a),
            "answer": await client.post(
                f"/api/v1/sessions/{b_session}/checklists/pre",
                json={"answers": [{"key": "T2", "status": "done"}]},
                headers=a,
            ),
            "template": await client.get(f"/api/v1/checklists/templates/{b_template}", headers=a),
        }
        assert {k: r.status_code for k, r in statuses.items()} == dict.fromkeys(statuses, 404)
        for response in statuses.values():
            assert "Porto" not in response.text
        assert (await client.get("/api/v1/checklists/flags", headers=a)).json() == []
        a_templates = (await client.get("/api/v1/checklists/templates", headers=a)).json()
        assert b_template not in {t["id"] for t in a_templates}


async def test_checklists_need_credentials(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/v1/checklists/templates")).status_code == 401
    assert (await client.get("/api/v1/sessions/1/checklists")).status_code == 401
