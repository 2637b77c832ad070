"""A client's alliance ratings over sessions as an accessible SVG chart (pygal), with the cutoff line.

The SVG names no client: its title is generic and its labels are session numbers and dates. It is
made to be inlined in a page: pygal's configuration script is removed (the page needs no
JavaScript and its content security policy allows none inline), and the root carries
``role="img"`` with a ``<title>`` and a ``<desc>`` that reads the series out for screen readers.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import tzinfo
from decimal import Decimal

import pygal
from pygal.style import Style

from core.alerts import ITEM_LABELS, ITEM_NAMES, Attendance, SessionRecord, session_numbers

SVG_NS = "http://www.w3.org/2000/svg"
XLINK_NS = "http://www.w3.org/1999/xlink"
ET.register_namespace("", SVG_NS)
ET.register_namespace("xlink", XLINK_NS)

TOTAL_SERIES = "Total (0-40)"
# Colours in legend order: total, cutoff, then the four items; dark enough for 4.5:1 on white.
_STYLE = Style(
    background="#ffffff",
    plot_background="#ffffff",
    foreground="#1f2933",
    foreground_strong="#1f2933",
    foreground_subtle="#616e7c",
    font_family="system-ui, -apple-system, 'Segoe UI', Roboto, sans-serif",
    colors=("#1f5f63", "#b42318", "#5b3f9e", "#8a4b00", "#205493", "#4d5b21"),
    opacity="1",
    opacity_hover="1",
)


def cutoff_label(cutoff: Decimal) -> str:
    return f"Cutoff {cutoff:.1f}"


def _number(value: Decimal | None) -> float | None:
    return float(value) if value is not None else None


def ratings_chart_svg(
    records: Sequence[SessionRecord],
    cutoff: Decimal,
    *,
    zone: tzinfo | None = None,
    title: str = "Alliance ratings by session",
) -> str:
    """The SVG of the totals (left axis, 0-40) and the four items (right axis, 0-10) of the attended
    sessions in ``records``, a dashed line at ``cutoff``, gaps where a rating is missing."""
    numbers = session_numbers(records)
    attended = [r for r in records if r.attendance is Attendance.ATTENDED]
    labels = [
        f"{numbers[r.session_id]} · {(r.start.astimezone(zone) if zone else r.start).strftime('%d %b')}"
        for r in attended
    ]
    chart = pygal.Line(
        js=[],
        title=title,
        style=_STYLE,
        x_title="Session",
        y_title="Total",
        range=(0, 40),
        secondary_range=(0, 10),
        # The cutoff gets its own tick; pygal fails on explicit ticks without data, so only with some.
        y_labels=sorted({0.0, 10.0, 20.0, 30.0, 40.0, float(cutoff)}) if attended else None,
        show_minor_x_labels=True,
        x_label_rotation=30 if len(labels) > 8 else 0,
        legend_at_bottom=True,
        legend_at_bottom_columns=3,
        allow_interruptions=True,  # a missing rating is a gap, not a line drawn through it
        disable_xml_declaration=True,
        width=800,
        height=420,
        no_data_text="No ratings yet",
    )
    chart.x_labels = labels
    if attended:
        chart.add(TOTAL_SERIES, [_number(r.total) for r in attended], stroke_style={"width": 3}, dots_size=4)
        chart.add(
            cutoff_label(cutoff),
            [float(cutoff)] * len(attended),
            show_dots=False,
            stroke_style={"width": 2, "dasharray": "8,5"},
        )
        for name in ITEM_NAMES:
            chart.add(
                f"{ITEM_LABELS[name].capitalize()} (0-10)",
                [_number(r.scores.items[name]) if r.scores is not None else None for r in attended],
                secondary=True,
                dots_size=3,
            )
    svg = chart.render(is_unicode=True)
    return _accessible(svg, title, _description(attended, labels, cutoff))


def _description(attended: Sequence[SessionRecord], labels: Sequence[str], cutoff: Decimal) -> str:
    if not attended:
        return "No attended sessions yet."
    parts = [
        f"session {label}: {r.total:.1f}" if r.total is not None else f"session {label}: no rating"
        for label, r in zip(labels, attended, strict=True)
    ]
    return f"Rating totals out of 40 by session, cutoff {cutoff:.1f}. " + "; ".join(parts) + "."


def _accessible(svg: str, title: str, description: str) -> str:
    """Drop pygal's script, give the root an image role with a title and a description."""
    root = ET.fromstring(svg)
    for parent in root.iter():
        for child in list(parent):
            if child.tag == f"{{{SVG_NS}}}script":
                parent.remove(child)
    chart_id = root.get("id", "chart")
    title_el = ET.Element(f"{{{SVG_NS}}}title", {"id": f"{chart_id}-title"})
    title_el.text = title
    desc_el = ET.Element(f"{{{SVG_NS}}}desc", {"id": f"{chart_id}-desc"})
    desc_el.text = description
    root.insert(0, desc_el)
    root.insert(0, title_el)
    root.set("role", "img")
    root.set("aria-labelledby", f"{chart_id}-title {chart_id}-desc")
    return ET.tostring(root, encoding="unicode")


__all__ = ["TOTAL_SERIES", "cutoff_label", "ratings_chart_svg"]
