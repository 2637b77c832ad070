"""Feeds added on the web reach public addresses only: no loopback, private networks or metadata services."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from alliance.app import create_app
from core.accounts import create_api_token, create_therapist
from core.store import Store
from integrations.base.protocol import InvalidSettings
from integrations.ics import IcsProvider
from integrations.ics.fetch import fetch
from integrations.ics.public_only import PrivateAddress, check_public_host
from tests.portal.conftest import asgi_client, make_settings
from tests.portal.feeds import Event, feed_server, soon

LOCAL_FEEDS = [
    "http://127.0.0.1:{port}/private.ics",
    "http://localhost:{port}/private.ics",
    "webcal://127.0.0.2:{port}/private.ics",
    "http://[::1]:{port}/private.ics",
    "http://[::ffff:127.0.0.1]:{port}/private.ics",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.1.2.3/cal.ics",
    "https://192.168.1.10/cal.ics",
    "http://100.64.0.1/cal.ics",
    "http://0.0.0.0:{port}/cal.ics",
]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_the_api_refuses_feeds_on_local_addresses_by_default(
    store: Store, tmp_path: Path, anyio_backend: str
) -> None:
    therapist = create_therapist(store, "ana@example.org")
    auth = {"Authorization": f"Bearer {create_api_token(store, therapist, 'tests').token}"}
    app = create_app(make_settings(tmp_path / "home", allow_private_feeds=False), store=store)
    with feed_server() as feed:
        feed.serve(Event("a@test", soon(1), "Session"))
        async with asgi_client(app) as client:
            for template in LOCAL_FEEDS:
                source = template.format(port=feed.port)
                answer = await client.post(
                    "/api/v1/connections", json={"provider": "ics", "source": source}, headers=auth
                )
                assert answer.status_code == 422, (source, answer.text)
                problem = answer.json()
                assert [e["name"] for e in problem["errors"]] == ["source"]
                assert "public internet" in answer.text and "private.ics" not in answer.text
            # A name that does not resolve (yet) is accepted; the sync reports it like any unreachable feed.
            pending = await client.post(
                "/api/v1/connections",
                json={"provider": "ics", "source": "https://calendar.invalid/feed.ics", "name": "later"},
                headers=auth,
            )
            assert pending.status_code == 201, pending.text
            listed = (await client.get("/api/v1/connections", headers=auth)).json()
            assert [c["name"] for c in listed] == ["later"]
        assert feed.requests == 0  # nothing was ever fetched from the local server


def test_a_public_only_feed_never_connects_to_a_local_address() -> None:
    with feed_server() as feed:
        feed.serve(Event("a@test", soon(1), "Session"))
        # The operator's own feeds (the CLI) may be anywhere: the same URL works without the flag.
        assert fetch(feed.url, max_bytes=1_000_000).body
        served = feed.requests
        with pytest.raises(PrivateAddress, match=r"127\.0\.0\.1.*public internet") as refused:
            fetch(feed.url, max_bytes=1_000_000, public_only=True)
        assert feed.secret not in str(refused.value)
        assert feed.requests == served  # refused before connecting


def test_public_only_settings_are_checked() -> None:
    with pytest.raises(InvalidSettings, match="public_only"):
        IcsProvider.normalize_settings({"source": "https://example.org/a.ics", "public_only": "yes"})
    with pytest.raises(InvalidSettings, match="http"):
        IcsProvider.normalize_settings({"source": "/etc/passwd", "public_only": True})
    clean = IcsProvider.normalize_settings({"source": "webcal://example.org/a.ics", "public_only": True})
    assert clean["public_only"] is True and clean["source"] == "https://example.org/a.ics"
    assert "public_only" not in IcsProvider.normalize_settings({"source": "https://example.org/a.ics"})


@given(st.ip_addresses())
def test_an_address_passes_exactly_when_it_is_global(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> None:
    mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
    public = (mapped or ip).is_global
    try:
        address = check_public_host(str(ip), 443)
    except PrivateAddress:
        assert not public
    else:
        assert public and ipaddress.ip_address(address) == ip


def test_httpx_honours_the_pinned_address_and_keeps_the_host_header() -> None:
    # What the transport relies on: a URL rewritten to an address keeps the Host header it was built with.
    request = httpx.Request("GET", "https://calendar.example.org/feed.ics")
    request.url = request.url.copy_with(host="93.184.216.34")
    assert request.headers["Host"] == "calendar.example.org" and request.url.host == "93.184.216.34"
