"""Client records are audited too: creating, changing, archiving and showing a client's details."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from core.accounts import create_api_token
from core.audit import AuditEntry, verify
from core.store import Store
from tests.cli.helpers import Run

pytestmark = pytest.mark.anyio

NAME = "Rosalind Achterberg"


def _entries(store: Store) -> list[tuple[str, str, int | None, str]]:
    with store.session() as session:
        rows = session.execute(
            select(AuditEntry.action, AuditEntry.target_kind, AuditEntry.client_id, AuditEntry.origin).order_by(
                AuditEntry.seq
            )
        ).all()
        assert verify(session)[1] == []
    return [(a, k, c, o) for a, k, c, o in rows]


async def test_client_record_access_over_the_api_is_audited(
    client: httpx.AsyncClient, store: Store, therapist: int
) -> None:
    auth = {"Authorization": f"Bearer {create_api_token(store, therapist, 't').token}"}
    made = (await client.post("/api/v1/clients", json={"name": NAME}, headers=auth)).json()
    cid, code = made["id"], made["code"]
    await client.get(f"/api/v1/clients/{code}", headers=auth)  # code only: nothing revealed
    await client.get("/api/v1/clients", headers=auth)
    await client.get(f"/api/v1/clients/{code}?reveal=true", headers=auth)
    await client.get("/api/v1/clients?reveal=true", headers=auth)
    await client.patch(f"/api/v1/clients/{code}", json={"phone": "+34 600 000 000"}, headers=auth)
    await client.patch(f"/api/v1/clients/{code}", json={"archived": True}, headers=auth)
    entries = _entries(store)
    assert [(a, k, c) for a, k, c, _ in entries] == [
        ("create", "client", cid),
        ("read", "client", cid),
        ("list", "client", cid),
        ("update", "client", cid),
        ("update", "client", cid),
    ]
    assert {o for *_, o in entries} == {"api 127.0.0.1"}
    with store.session() as session:
        details = [e.detail for e in session.scalars(select(AuditEntry))]
    assert NAME not in repr(details)


def test_client_commands_are_audited(run: Run, home: object) -> None:
    code = run("clients", "add", "--name", NAME).stdout.strip()
    run("clients", "list")
    run("clients", "list", "--show-names")
    run("clients", "archive", code)
    log = run("audit", "verify").stdout
    assert "audit log intact: 3 entries" in log
