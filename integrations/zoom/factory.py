"""Build a :class:`ZoomMeetingProvider` from a stored video connection.

Stored credentials (encrypted with the connection, see ``core.video.models``):

- ``kind="s2s"``: ``{"account_id", "client_id", "client_secret", "user_id"}`` — a practice-wide
  Server-to-Server app; meetings are created for the therapist's Zoom user (id or e-mail).
- ``kind="user"``: ``{"access_token", "refresh_token", "expires_at", "user_id": "me"}`` — the
  therapist's own grant to the practice's user-level OAuth app (client id/secret are settings);
  every rotated refresh token is saved back at once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from core.video.service import VideoConnectionInfo
from integrations.zoom.client import ZoomApi
from integrations.zoom.errors import ZoomAuthError
from integrations.zoom.provider import ZoomMeetingProvider
from integrations.zoom.tokens import Guard, RefreshStep, TokenSource, UserTokenSource, s2s_source

__all__ = ["ZoomOptions", "make_provider", "token_url"]


@dataclass(frozen=True, slots=True)
class ZoomOptions:
    api_url: str
    oauth_url: str
    user_client_id: str | None = None
    user_client_secret: str | None = None
    timeout: int = 15


def token_url(oauth_url: str) -> str:
    return oauth_url.rstrip("/") + "/oauth/token"


def make_provider(
    info: VideoConnectionInfo, save: Callable[[dict[str, Any]], None], options: ZoomOptions
) -> ZoomMeetingProvider:
    creds = info.credentials
    tokens: TokenSource
    if info.kind == "s2s":
        tokens = s2s_source(
            token_url(options.oauth_url), creds["account_id"], creds["client_id"], creds["client_secret"]
        )
    elif info.kind == "user":
        if not options.user_client_id or not options.user_client_secret:
            raise ZoomAuthError("ALLIANCE_ZOOM_CLIENT_ID / ALLIANCE_ZOOM_CLIENT_SECRET are not set")

        def persist(new: dict[str, Any]) -> None:
            save({**creds, **new})
            creds.update(new)

        guard: Guard | None = None
        locked_update = info.locked_update
        if locked_update is not None:
            # Refresh under the connection's database lock (rotating refresh tokens, several workers).
            def guard(step: RefreshStep) -> dict[str, Any]:
                result = locked_update(step)
                creds.update(result)
                return result

        tokens = UserTokenSource(
            token_url(options.oauth_url),
            options.user_client_id,
            options.user_client_secret,
            creds,
            on_refresh=persist,
            guard=guard,
        )
    else:
        raise ZoomAuthError(f"unknown Zoom connection kind {info.kind!r}")
    return ZoomMeetingProvider(ZoomApi(options.api_url, tokens, timeout=options.timeout), str(creds["user_id"]))
