"""The thresholds of the alert rules, with the defaults of reference/clinical.md section H."""

from __future__ import annotations

from dataclasses import dataclass, fields
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class AlertThresholds:
    """Every number the rules use; override any of them (``alliance`` reads ``ALLIANCE_ALERT_*``).

    The cutoff of 36 is the SRS authors'; for the built-in neutral form it is only a heuristic
    (``cutoff_is_heuristic``), and populations differ (34 in a Chinese validation).
    """

    cutoff: Decimal = Decimal(36)  # R1, R2, R4: a total below it is below the cutoff
    cutoff_is_heuristic: bool = True  # the built-in form has no norms of its own
    item_low: Decimal = Decimal(9)  # R2: an item below it, with the total at or above the cutoff
    drop_from_previous: Decimal = Decimal(1)  # R3: the total fell at least this much since last time...
    drop_from_max: Decimal = Decimal(2)  # R3: ...or lies at least this much below the client's best so far
    high_previous: Decimal = Decimal(39)  # R3: priority when the previous total was at least this
    early_sessions: int = 3  # R4: sessions 1..3
    perfect_total: Decimal = Decimal(40)  # R5: a perfect score...
    perfect_run: int = 3  # R5: ...at each of the first sessions
    missing_run: int = 2  # R6: ratings not completed at this many attended sessions in a row
    no_show_priority_before: int = 3  # R7: priority for a no-show before this session number
    cancellations: int = 2  # R8: at least this many client cancellations...
    cancellation_window: int = 4  # R8: ...among the last scheduled sessions

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type == "Decimal" and not isinstance(value, bool):  # 34 or 34.5 from settings
                object.__setattr__(self, f.name, Decimal(str(value)))
        if not Decimal(0) <= self.cutoff <= Decimal(40):
            raise ValueError("cutoff: between 0 and 40")
        if not Decimal(0) <= self.item_low <= Decimal(10):
            raise ValueError("item_low: between 0 and 10")
        if not Decimal(0) < self.perfect_total <= Decimal(40):
            raise ValueError("perfect_total: above 0, at most 40")
        for name in ("drop_from_previous", "drop_from_max"):
            if not Decimal(0) < getattr(self, name) <= Decimal(40):
                raise ValueError(f"{name}: above 0, at most 40")
        if not Decimal(0) <= self.high_previous <= Decimal(40):
            raise ValueError("high_previous: between 0 and 40")
        for name in ("early_sessions", "perfect_run", "missing_run", "no_show_priority_before", "cancellations"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: at least 1")
        if self.cancellation_window < self.cancellations:
            raise ValueError("cancellation_window: at least as many sessions as 'cancellations'")


__all__ = ["AlertThresholds"]
