"""The client confirms place and number on their page; the therapist's checklist page drops the S2 flag."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from core.checklists import open_flags
from core.links import issue_link
from core.store import Store
from tests.links.world import LinkWorld
from tests.portal.conftest import sign_in

pytestmark = pytest.mark.anyio


async def test_a_check_in_on_the_client_page_clears_s2_on_the_therapists_page(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    world = LinkWorld(store, "ana@example.org")  # the signed-in therapist
    code = world.client()
    session_id = world.session("s2@test", datetime.now(UTC).replace(minute=0) + timedelta(days=1), code)
    token = issue_link(store, world.therapist, session_id)
    await sign_in(client)
    before = (await client.get(f"/sessions/{session_id}/checklists")).text
    assert 'href="#item-S2"' in before and "client-confirmed" not in before

    sent = await client.post(
        f"/c/{token}/checkin",
        data={"checked": ["C1", "C6"], "location": "Office, 2nd floor", "callback": "+49 30 1234567"},
        headers={"accept": "text/html"},
    )
    assert sent.status_code == 303
    after = (await client.get(f"/sessions/{session_id}/checklists")).text
    assert 'href="#item-S2"' not in after and 'id="client-confirmed"' in after
    assert session_id not in open_flags(store, world.therapist)
