"""The alert thresholds of ``core.alerts`` from the settings (``ALLIANCE_ALERT_*``)."""

from __future__ import annotations

from alliance.settings import Settings
from core.alerts import AlertThresholds


def alert_thresholds(settings: Settings) -> AlertThresholds:
    """The reference's defaults, with what the practice configured instead."""
    return AlertThresholds(
        cutoff=settings.alert_cutoff,
        item_low=settings.alert_item_low,
        drop_from_previous=settings.alert_drop_from_previous,
        drop_from_max=settings.alert_drop_from_max,
        high_previous=settings.alert_high_previous,
        early_sessions=settings.alert_early_sessions,
        missing_run=settings.alert_missing_run,
        no_show_priority_before=settings.alert_no_show_priority_before,
        cancellations=settings.alert_cancellations,
        cancellation_window=settings.alert_cancellation_window,
    )


__all__ = ["alert_thresholds"]
