"""/api/v1/sessions/{id}/video: status and retry, scoped to the therapist."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alliance.app import create_app
from alliance.settings import Settings
from core.accounts import create_api_token, create_therapist
from core.store import Store
from sandbox.zoom import Fault, RunningZoom, run_zoom_emulator
from tests.conftest import TEST_MASTER_KEY
from tests.portal.conftest import asgi_client
from tests.video.world import VideoWorld, soon


@pytest.fixture
def zoom() -> Iterator[RunningZoom]:
    with run_zoom_emulator() as emu:
        yield emu


@pytest.mark.anyio
async def test_video_status_and_retry_over_the_api(store: Store, zoom: RunningZoom, tmp_path: Path) -> None:
    settings = Settings(  # type: ignore[arg-type]
        home=tmp_path / "home",
        master_key=TEST_MASTER_KEY,
        timezone="UTC",
        zoom_api_url=zoom.api_url,
        zoom_oauth_url=zoom.base_url,
        video_max_attempts=1,
    )
    world = VideoWorld(store, zoom, tmp_path, settings=settings)
    world.connect()
    zoom.state.inject_fault(Fault(status=503, code=503, message="down", method="POST", path_prefix="/v2/", times=5))
    start = soon()
    world.put("evt-1", start)
    world.sync()
    sid = world.assign("evt-1", start)
    token = create_api_token(store, world.therapist, "t").token
    other = create_api_token(store, create_therapist(store, "other@example.org"), "o").token
    async with asgi_client(create_app(settings, store=store)) as client:
        mine = {"Authorization": f"Bearer {token}"}
        missing = (await client.get(f"/api/v1/sessions/{sid}/video", headers=mine)).json()
        assert missing["link_status"] == "missing" and "503" in missing["error"]
        foreign = await client.get(f"/api/v1/sessions/{sid}/video", headers={"Authorization": f"Bearer {other}"})
        assert foreign.status_code == 404
        refused = await client.post(f"/api/v1/sessions/{sid}/video/retry", headers={"Authorization": f"Bearer {other}"})
        assert refused.status_code == 404 and zoom.state.meetings == {}
        zoom.state.faults.clear()
        fixed = (await client.post(f"/api/v1/sessions/{sid}/video/retry", headers=mine)).json()
        assert fixed["outcome"] == "created" and fixed["video"]["link_status"] == "ok"
        [meeting] = zoom.state.meetings.values()
        assert fixed["video"]["join_url"] == meeting.join_url()
