"""Wiring of the video lifecycle: settings -> config, stored connections -> Zoom providers."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from alliance.settings import Settings
from core.jobs import RetryPolicy
from core.video.provider import MeetingProvider
from core.video.service import ProviderFactory, VideoConfig, VideoConnectionInfo
from integrations.zoom.errors import ZoomAuthError
from integrations.zoom.factory import ZoomOptions, make_provider

__all__ = ["provider_factory", "video_config", "zoom_options"]


def video_config(settings: Settings) -> VideoConfig:
    return VideoConfig(
        window=timedelta(days=settings.video_window_days),
        daily_budget=settings.video_daily_budget,
        max_attempts=settings.video_max_attempts,
        policy=RetryPolicy(max_attempts=settings.video_max_attempts),
        lease=timedelta(seconds=settings.video_lease_seconds),
    )


def zoom_options(settings: Settings) -> ZoomOptions:
    secret = settings.zoom_client_secret
    return ZoomOptions(
        api_url=settings.zoom_api_url,
        oauth_url=settings.zoom_oauth_url,
        user_client_id=settings.zoom_client_id,
        user_client_secret=secret.get_secret_value() if secret is not None else None,
    )


def provider_factory(settings: Settings) -> ProviderFactory:
    options = zoom_options(settings)

    def factory(info: VideoConnectionInfo, save: Callable[[dict[str, Any]], None]) -> MeetingProvider:
        if info.provider != "zoom":
            raise ZoomAuthError(f"no meeting provider {info.provider!r} is installed")
        return make_provider(info, save, options)

    return factory
