"""The signed-in overview shows the therapist's own connections, and no one else's."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import update

from core.accounts import create_therapist, set_password
from core.mirror import add_connection
from core.store import Connection, Store
from tests.portal.conftest import PASSWORD, sign_in

pytestmark = pytest.mark.anyio


async def test_overview_lists_only_my_connections(client: httpx.AsyncClient, store: Store, therapist: int) -> None:
    other = create_therapist(store, "olga@example.org")
    set_password(store, other, PASSWORD)
    mine = add_connection(store, therapist, "ics", "Practice calendar", {"url": "https://example.org/a.ics"})
    add_connection(store, other, "ics", "Olga private", {"url": "https://example.org/b.ics"})
    with store.session() as session:
        session.execute(update(Connection).where(Connection.id == mine).values(health="needs_reconnect"))

    await sign_in(client)
    page = await client.get("/")
    assert page.status_code == 200
    assert "Practice calendar" in page.text and "ics" in page.text and "needs reconnect" in page.text
    assert "never" in page.text  # no sync yet
    assert "Olga private" not in page.text and "olga@example.org" not in page.text
    assert "example.org/a.ics" not in page.text  # connection secrets stay out of pages

    await client.post("/logout", data={"csrf_token": page.text.split('name="csrf_token" value="')[1].split('"')[0]})
    await sign_in(client, "olga@example.org")
    theirs = (await client.get("/")).text
    assert "Olga private" in theirs and "Practice calendar" not in theirs
