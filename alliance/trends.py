"""A client's rating trend with the practice's settings: thresholds, link validity, licensed measure."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import Any

from alliance.alerts import alert_thresholds
from alliance.settings import Settings
from core.client_trends import ClientTrend, client_trend
from core.links.policy import LinkPolicy
from core.ratings import licensed_measure
from core.store import Store


def link_policy(settings: Settings) -> LinkPolicy:
    """The client-link timing rules from the settings (how long a rating is still expected)."""
    return LinkPolicy(
        valid_days=settings.link_valid_days,
        join_opens_minutes=settings.join_opens_minutes,
        rating_delay_minutes=settings.rating_delay_minutes,
        min_call_minutes=settings.rating_min_call_minutes,
    )


def settings_trend(
    store: Store, settings: Settings, therapist_id: int, code: str, *, now: datetime | None = None
) -> ClientTrend:
    """``core.client_trends.client_trend`` with the configured thresholds; the cutoff is a heuristic
    unless the practice loaded the licensed SRS text (its norms belong to that instrument)."""
    thresholds = replace(alert_thresholds(settings), cutoff_is_heuristic=licensed_measure(store) is None)
    return client_trend(store, therapist_id, code, thresholds=thresholds, policy=link_policy(settings), now=now)


def _num(value: Any) -> float | None:
    return round(float(value), 1) if value is not None else None


def trend_json(trend: ClientTrend) -> dict[str, Any]:
    """The JSON shape of a trend (the API's schema and ``alliance clients ratings --json``)."""
    t = trend.thresholds
    return {
        "client": trend.client_code,
        "cutoff": _num(t.cutoff),
        "cutoff_is_heuristic": t.cutoff_is_heuristic,
        "sessions": [
            {
                "session_id": row.record.session_id,
                "number": row.number,
                "start": row.record.start.isoformat(),
                "end": row.end.isoformat(),
                "attendance": row.record.attendance.value,
                "rating": row.record.rating.value if row.record.rating else None,
                "measure": row.measure,
                "total": _num(row.record.total),
                "items": (
                    {name: _num(value) for name, value in row.record.scores.items.items()}
                    if row.record.scores is not None
                    else None
                ),
            }
            for row in trend.rows
        ],
        "flags": [
            {
                "rule": f.rule,
                "severity": f.severity.value,
                "session_id": f.session_id,
                "explanation": f.explanation,
                "rows": [r.session_id for r in f.rows],
            }
            for f in trend.flags
        ],
    }


__all__ = ["link_policy", "settings_trend", "trend_json"]
