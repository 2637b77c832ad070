"""/connect/zoom: the user-level OAuth code flow (authlib) against the Zoom emulator; rotated
refresh tokens persisted through the keyring; a revoked grant -> "needs reconnect", links kept."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from alliance.app import create_app
from alliance.settings import Settings
from core.crypto import Owner
from core.store import Store
from core.video.models import VideoConnection
from core.video.service import get_video_connection
from sandbox.zoom import RunningZoom, run_zoom_emulator
from tests.conftest import TEST_MASTER_KEY
from tests.portal.conftest import asgi_client, sign_in
from tests.video.world import VideoWorld, soon

APP_ID, APP_SECRET = "user-app", "user-app-secret"


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator() as emu:
        emu.state.add_user_app(APP_ID, APP_SECRET, ("http://testserver/connect/zoom/callback",))
        yield emu


def _settings(tmp_path: Path, zoom: RunningZoom, **extra: object) -> Settings:
    return Settings(  # type: ignore[arg-type]
        home=tmp_path / "home",
        master_key=TEST_MASTER_KEY,
        timezone="UTC",
        base_url="http://testserver",
        zoom_api_url=zoom.api_url,
        zoom_oauth_url=zoom.base_url,
        zoom_client_id=APP_ID,
        zoom_client_secret=APP_SECRET,
        **extra,
    )


def _stored(store: Store, therapist: int) -> dict[str, object]:
    with store.session() as session:
        row = session.scalars(select(VideoConnection).where(VideoConnection.therapist_id == therapist)).one()
        plain = store.keyring.decrypt(
            session, Owner("therapist", therapist), row.credentials, f"video_connections.credentials|{row.id}"
        )
    data: dict[str, object] = json.loads(plain)
    return data


@pytest.mark.anyio
async def test_connect_zoom_with_the_code_flow_then_refresh_rotates_and_revoke_needs_reconnect(
    store: Store, therapist: int, zoom: RunningZoom, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, zoom)
    async with asgi_client(create_app(settings, store=store)) as client:
        await sign_in(client)
        start = await client.get("/connect/zoom")
        assert start.status_code == 303 and start.headers["location"].startswith(zoom.authorize_url)
        # The therapist approves at Zoom (the emulator), which redirects back with a code.
        consent = httpx.get(start.headers["location"], follow_redirects=False, timeout=5)
        assert consent.status_code == 302
        back = httpx.URL(consent.headers["location"])
        done = await client.get(f"/connect/zoom/callback?{back.query.decode()}")
        assert done.status_code == 303 and done.headers["location"] == "/"
    first = _stored(store, therapist)
    assert first["user_id"] == "me" and isinstance(first["refresh_token"], str)

    # A session of this therapist gets a meeting for "me" through the user grant.
    world = VideoWorld(store, zoom, tmp_path, email="ana@example.org", settings=settings)
    assert world.therapist == therapist
    start = soon()
    world.put("evt-1", start)
    world.sync()
    sid = world.assign("evt-1", start)
    [meeting] = world.meetings()
    assert meeting.host_id == zoom.state.default_user.id

    # The access token lapses: the refresh rotates the refresh token, and the new one is stored.
    zoom.state.expire_tokens()
    world.put("evt-2", soon(days=3))
    world.sync()
    world.assign("evt-2", soon(days=3))
    assert len(world.meetings()) == 2
    second = _stored(store, therapist)
    assert second["refresh_token"] != first["refresh_token"]
    assert (
        second["refresh_token"] in zoom.state.refresh_tokens and first["refresh_token"] not in zoom.state.refresh_tokens
    )

    # The therapist removes the app in Zoom: needs reconnect; the existing link stays.
    zoom.state.revoke_user_grants(APP_ID)
    zoom.state.expire_tokens()
    world.put("evt-1", start + timedelta(hours=1))
    world.sync()
    connection = get_video_connection(store, therapist)
    assert connection is not None and connection.health == "needs_reconnect"
    video = world.video(sid)
    assert video is not None and video.join_url == meeting.join_url() and video.status == "active"


@pytest.mark.anyio
async def test_a_callback_with_a_foreign_state_or_a_refused_code_connects_nothing(
    store: Store, therapist: int, zoom: RunningZoom, tmp_path: Path
) -> None:
    async with asgi_client(create_app(_settings(tmp_path, zoom), store=store)) as client:
        await sign_in(client)
        await client.get("/connect/zoom")
        forged = await client.get("/connect/zoom/callback?code=x&state=not-the-cookie")
        assert forged.status_code == 400
        start = await client.get("/connect/zoom")
        state = httpx.URL(start.headers["location"]).params["state"]
        refused = await client.get(f"/connect/zoom/callback?code=made-up&state={state}")
        assert refused.status_code == 400
    assert get_video_connection(store, therapist) is None


@pytest.mark.anyio
async def test_connect_zoom_needs_a_signed_in_therapist(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    async with asgi_client(create_app(_settings(tmp_path, zoom), store=store)) as client:
        response = await client.get("/connect/zoom")
    assert response.status_code in (302, 303) and "/login" in response.headers["location"]
