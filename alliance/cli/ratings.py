"""``alliance clients ratings CODE [--json]``: a client's alliance ratings over sessions and the advisory flags.

Prints the client's code, never a name; comments are not shown (they stay on the therapist's page
of a session, decrypted only there).
"""

from __future__ import annotations

import json
from zoneinfo import ZoneInfo

import typer
from rich.table import Table

from alliance.cli.common import CliError, console, open_env
from alliance.trends import settings_trend, trend_json
from core.alerts import ITEM_LABELS, ITEM_NAMES
from core.clients import UnknownClient

ATTENDANCE = {
    "attended": "attended",
    "no_show": "no-show",
    "client_cancelled": "cancelled (client)",
    "client_cancelled_late": "cancelled late (client)",
    "therapist_cancelled": "cancelled",
    "scheduled": "ahead",
}


def _one(value: float | None) -> str:
    return f"{value:.1f}" if value is not None else "-"


def register(clients_app: typer.Typer) -> None:
    """Add ``ratings`` to the ``clients`` command group."""

    @clients_app.command("ratings")
    def ratings(
        code: str = typer.Argument(..., help="The client's code."),
        as_json: bool = typer.Option(False, "--json", help="Print the series and the flags as JSON."),
    ) -> None:
        """A client's alliance ratings by session with the advisory flags R1-R8 (thresholds: ALLIANCE_ALERT_*)."""
        env = open_env()
        try:
            trend = settings_trend(env.store, env.settings, env.therapist_id, code)
        except UnknownClient:
            raise CliError(f"no client with code {code.strip()[:40]!r}") from None
        data = trend_json(trend)
        if as_json:
            console.print_json(json.dumps(data))
            return
        zone = ZoneInfo(env.therapist_timezone)
        table = Table(
            "#",
            "date",
            "attendance",
            "rating",
            "total",
            *(ITEM_LABELS[n] for n in ITEM_NAMES),
            "flags",
            title=f"Alliance ratings of {trend.client_code} (cutoff {data['cutoff']:.1f})",
        )
        for row, shown in zip(trend.rows, data["sessions"], strict=True):
            items = shown["items"] or {}
            table.add_row(
                str(row.number),
                row.record.start.astimezone(zone).strftime("%Y-%m-%d %H:%M"),
                ATTENDANCE[shown["attendance"]],
                shown["rating"] or "",
                _one(shown["total"]),
                *(_one(items.get(n)) for n in ITEM_NAMES),
                " ".join(f.rule for f in trend.flags_at(row.record.session_id)),
            )
        console.print(table)
        numbers = {row.record.session_id: row.number for row in trend.rows}
        if not trend.flags:
            console.print("No flags.", highlight=False, markup=False)
        for flag in trend.flags:
            rows = ", ".join(str(numbers[r.session_id]) for r in flag.rows)
            console.print(
                f"{flag.rule} ({flag.severity.value}) at session {numbers[flag.session_id]}: {flag.explanation} "
                f"[sessions {rows}]",
                highlight=False,
                markup=False,
            )


__all__ = ["register"]
