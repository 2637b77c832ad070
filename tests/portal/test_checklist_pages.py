"""The checklist pages of a session: labelled forms, CSRF, saving, errors named, flags shown, 404 for others."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from core.checklists import AnswerStatus, Phase, session_checklists
from core.clients import assign_series, create_client, list_sessions
from core.store import Store
from tests.core.test_clients import MONDAY, World
from tests.portal.conftest import asgi_client, csrf_from, sign_in

pytestmark = pytest.mark.anyio


def _sessions(store: Store, email: str = "ana@example.org") -> tuple[int, list[int]]:
    world = World(store, email)
    client = create_client(store, world.therapist, modality="online")
    world.weekly("weekly@test", MONDAY, 2)
    world.sync()
    assign_series(store, world.therapist, world.connection, "weekly@test", client.code, from_start=MONDAY)
    return world.therapist, [s.id for s in list_sessions(store, world.therapist)]


def _labels_cover_every_input(html: str) -> None:
    """Every visible input sits inside a <label> (implicit labelling), every fieldset has a legend."""
    form_html = html[html.index('<section class="card checklist"') :]
    for match in re.finditer(r"<input (?![^>]*type=\"hidden\")[^>]*>", form_html):
        before = form_html[: match.start()]
        assert before.rfind("<label") > before.rfind("</label>"), match.group(0)
    assert form_html.count("<fieldset") == form_html.count("<legend>")


async def test_the_page_shows_three_labelled_lists_and_the_location_flag(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    _, (first, second) = _sessions(store)
    await sign_in(client)
    page = await client.get(f"/sessions/{first}/checklists")
    assert page.status_code == 200
    html = page.text
    for title in ("Before the session", "At the start of the session", "After the session"):
        assert title in html
    assert 'role="alert"' in html and 'href="#item-S2"' in html  # the open S2 flag
    assert 'name="status.S7"' in html  # first session
    assert 'name="status.S7"' not in (await client.get(f"/sessions/{second}/checklists")).text
    _labels_cover_every_input(html)


async def test_saving_a_list_records_changed_answers_and_clears_the_flag(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    therapist_id, (first, _second) = _sessions(store)
    await sign_in(client)
    token = csrf_from((await client.get(f"/sessions/{first}/checklists")).text)

    # S2 done without its text: the page comes back with the error and what was typed.
    refused = await client.post(
        f"/sessions/{first}/checklists/start",
        data={"csrf_token": token, "status.S1": "done", "status.S2": "done", "text.S3": "Partner out of the house"},
    )
    assert refused.status_code == 422
    assert "S2 needs a text" in refused.text and "Partner out of the house" in refused.text
    assert session_checklists(store, therapist_id, first).run(Phase.START).run_id is None  # nothing half-written

    saved = await client.post(
        f"/sessions/{first}/checklists/start",
        data={
            "csrf_token": token,
            "status.S1": "done",
            "status.S2": "done",
            "text.S2": "Home office; callback +44 7700 900123",
            "status.S6": "skipped",
            "reason.S6": "Next week",
            "status.S3": "",
        },
    )
    assert saved.status_code == 303 and saved.headers["location"].startswith(
        f"/sessions/{first}/checklists?saved=start"
    )
    run = session_checklists(store, therapist_id, first).run(Phase.START)
    answers = {s.item.key: s.answer for s in run.items if s.answer}
    assert set(answers) == {"S1", "S2", "S6"}
    assert answers["S2"] is not None and answers["S2"].text == "Home office; callback +44 7700 900123"
    assert answers["S6"] is not None and answers["S6"].status is AnswerStatus.SKIPPED
    after = await client.get(saved.headers["location"])
    assert "At the start of the session: saved." in after.text and 'href="#item-S2"' not in after.text

    # Saving the same form again stores nothing new.
    again = await client.post(
        f"/sessions/{first}/checklists/start",
        data={
            "csrf_token": token,
            "status.S1": "done",
            "status.S2": "done",
            "text.S2": "Home office; callback +44 7700 900123",
            "status.S6": "skipped",
            "reason.S6": "Next week",
        },
    )
    assert again.status_code == 303
    assert session_checklists(store, therapist_id, first).run(Phase.START).updated_at == run.updated_at


async def test_a_form_without_its_csrf_token_is_refused(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    therapist_id, (first, _second) = _sessions(store)
    await sign_in(client)
    forged = await client.post(f"/sessions/{first}/checklists/pre", data={"status.T2": "done"})
    assert forged.status_code == 403
    assert session_checklists(store, therapist_id, first).run(Phase.PRE).run_id is None


async def test_pages_need_a_sign_in_and_another_therapists_session_is_404(
    app: FastAPI, client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    _, (b_first, _b_second) = _sessions(store, "bea@example.org")
    anonymous = await client.get(f"/sessions/{b_first}/checklists")
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")
    await sign_in(client)  # Ana
    html = {"accept": "text/html"}
    assert (await client.get(f"/sessions/{b_first}/checklists", headers=html)).status_code == 404
    token = csrf_from((await client.get("/")).text)
    posted = await client.post(f"/sessions/{b_first}/checklists/pre", data={"csrf_token": token, "status.T2": "done"})
    assert posted.status_code == 404
    assert (await client.get("/sessions/999999/checklists")).status_code == 404
    async with asgi_client(app) as other:
        assert (await other.get(f"/sessions/{b_first}/checklists")).status_code == 303
