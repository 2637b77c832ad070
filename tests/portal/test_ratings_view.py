"""The therapist's ratings view over HTTP (the real app on both databases): page and API, flags, privacy, 404s.

The client's course is synced from a memory calendar (tests/trends/world.py); one rating is sent
through the client's own page, the way a client sends it.
"""

from __future__ import annotations

import base64
import hashlib
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

import httpx
import pytest
from fastapi import FastAPI

from alliance.app import create_app
from alliance.settings import Settings
from core.accounts import create_api_token
from core.links import issue_link
from core.store import Store
from tests.portal.conftest import asgi_client, sign_in
from tests.trends.world import Course

pytestmark = pytest.mark.anyio
SVG_NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture
def course(store: Store, therapist: int) -> Course:
    return Course(store, "ana@example.org")  # the signed-in therapist's client


async def _rate_on_the_client_page(client: httpx.AsyncClient, course: Course) -> int:
    """A session two days ago, rated 8/8/8/8 (32.0) by the client on their link."""
    session_id = course.missed_rating("c-page", 2 / 7)
    token = issue_link(course.store, course.therapist, session_id)
    sent = await client.post(
        f"/c/{token}/rating",
        data={"bond": "8", "goals": "8", "approach": "8", "overall": "8"},
        headers={"accept": "text/html"},
    )
    assert sent.status_code == 303
    return session_id


async def test_the_page_shows_chart_cutoff_table_and_flags_with_their_rows(
    client: httpx.AsyncClient, course: Course
) -> None:
    rated = await _rate_on_the_client_page(client, course)
    await sign_in(client)
    page = await client.get(f"/clients/{course.code}/ratings")
    assert page.status_code == 200
    html = page.text

    # The chart is inline, an accessible image, with the cutoff line and every total.
    svg_text = html[html.index("<svg") : html.index("</svg>") + len("</svg>")]
    svg = ET.fromstring(svg_text)
    assert svg.get("role") == "img" and svg.find(f"{SVG_NS}title") is not None
    desc = svg.find(f"{SVG_NS}desc")
    assert desc is not None and desc.text is not None
    for total in ("38.5", "35.5", "32.0"):
        assert total in desc.text
    assert "Cutoff 36.0" in svg_text and "<script" not in svg_text
    # Its own inline style is allowed by hash, and nothing else inline is.
    csp = page.headers["content-security-policy"]
    for style in svg.iter(f"{SVG_NS}style"):
        digest = base64.b64encode(hashlib.sha256((style.text or "").encode()).digest()).decode()
        assert f"'sha256-{digest}'" in csp
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp

    # The table: a caption, column and row headers, one row per session with its total and items.
    table = html[html.index("<table") : html.index("</table>")]
    assert "<caption>" in table and table.count('<th scope="col">') == 10
    assert len(re.findall(r'<tr id="session-\d+">', table)) == 7
    row = re.search(rf'<tr id="session-{rated}">(.*?)</tr>', table, re.S)
    assert row is not None and ">32.0<" in row.group(1) and row.group(1).count(">8.0<") == 4
    no_show = re.search(rf'<tr id="session-{course.s3}">(.*?)</tr>', table, re.S)
    assert no_show is not None and "no-show" in no_show.group(1) and "R7" in no_show.group(1)

    # The flags: rule id, plain explanation, links to the rows that triggered them.
    flags = html[html.index('id="flags-title"') : html.index('id="chart-title"')]
    found = re.findall(r'<span class="key">(R\d)</span>', flags)
    assert found == ["R2", "R1", "R3", "R4", "R7", "R1", "R3"]
    assert "The rating dropped" in flags and "Consider reaching out" in flags
    drop = flags[flags.rindex('<span class="key">R3</span>') :].split("</li>")[0]
    # The last drop (32.0): below last time (35.5, session 2) and below the best (38.5, session 1).
    assert f'href="#session-{course.s1}"' in drop and f'href="#session-{course.s2}"' in drop
    assert f'href="#session-{rated}"' in drop and "6.5 points below the client&#39;s best" in drop

    # No name anywhere: the page and its chart know the client by code only.
    assert "Zelda" not in html and "Secretname" not in html and "felt rushed" not in html
    assert course.code in html and course.code not in svg_text


async def test_the_api_returns_the_series_and_the_flags(
    store: Store, client: httpx.AsyncClient, course: Course
) -> None:
    rated = await _rate_on_the_client_page(client, course)
    headers = {"Authorization": f"Bearer {create_api_token(store, course.therapist, 'tests').token}"}
    answer = await client.get(f"/api/v1/clients/{course.code.lower()}/ratings", headers=headers)
    assert answer.status_code == 200
    body = answer.json()
    assert body["client"] == course.code and body["cutoff"] == 36.0 and body["cutoff_is_heuristic"] is True
    sessions = {s["session_id"]: s for s in body["sessions"]}
    assert sessions[course.s1]["total"] == 38.5 and sessions[course.s1]["items"]["goals"] == 8.5
    assert sessions[course.s3]["attendance"] == "no_show" and sessions[course.s3]["items"] is None
    assert sessions[course.s4]["rating"] == "missing" and sessions[course.s5]["rating"] == "not_requested"
    assert sessions[rated]["total"] == 32.0 and sessions[rated]["measure"] == "alliance4"
    assert sessions[course.s6]["attendance"] == "scheduled"
    assert [(f["session_id"], f["rule"]) for f in body["flags"]] == [
        (course.s1, "R2"),
        (course.s2, "R1"),
        (course.s2, "R3"),
        (course.s2, "R4"),
        (course.s3, "R7"),
        (rated, "R1"),
        (rated, "R3"),
    ]
    assert body["flags"][-1]["rows"] == [course.s1, course.s2, rated]
    assert "Zelda" not in answer.text and "felt rushed" not in answer.text


async def test_another_therapists_client_is_a_404_on_page_and_api(
    store: Store, client: httpx.AsyncClient, course: Course
) -> None:
    other = Course(store, "other@alliance.test")
    await sign_in(client)
    assert (await client.get(f"/clients/{other.code}/ratings")).status_code == 404
    assert (await client.get("/clients/NOPE/ratings")).status_code == 404
    headers = {"Authorization": f"Bearer {create_api_token(store, course.therapist, 'tests').token}"}
    refused = await client.get(f"/api/v1/clients/{other.code}/ratings", headers=headers)
    assert refused.status_code == 404 and refused.headers["content-type"].startswith("application/problem+json")


async def test_signed_out_the_page_asks_to_sign_in(client: httpx.AsyncClient, course: Course) -> None:
    page = await client.get(f"/clients/{course.code}/ratings")
    assert page.status_code in (303, 401) and "Zelda" not in page.text and "38.5" not in page.text
    assert (await client.get(f"/api/v1/clients/{course.code}/ratings")).status_code == 401


async def test_thresholds_come_from_the_settings(
    store: Store, settings: Settings, course: Course, app: FastAPI
) -> None:
    tuned = create_app(settings.model_copy(update={"alert_cutoff": Decimal(34)}), store=store)
    headers = {"Authorization": f"Bearer {create_api_token(store, course.therapist, 'tests').token}"}
    async with asgi_client(tuned) as c:
        body = (await c.get(f"/api/v1/clients/{course.code}/ratings", headers=headers)).json()
    assert body["cutoff"] == 34.0
    # 35.5 is no longer below the cutoff: R2 for its low item instead of R1/R4.
    assert [(f["session_id"], f["rule"]) for f in body["flags"]] == [
        (course.s1, "R2"),
        (course.s2, "R2"),
        (course.s2, "R3"),
        (course.s3, "R7"),
    ]
