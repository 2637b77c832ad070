"""The ratings chart: a parseable, accessible SVG with every point, the cutoff line, and nothing identifying."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from core.alerts import Attendance, Scores, SessionRecord
from portal.charts import TOTAL_SERIES, cutoff_label, ratings_chart_svg

NS = {"svg": "http://www.w3.org/2000/svg"}
T0 = datetime(2030, 1, 7, 17, 0, tzinfo=UTC)


def _records(values: list[tuple[float, float, float, float] | str | None]) -> list[SessionRecord]:
    records = []
    for i, v in enumerate(values):
        start = T0 + timedelta(weeks=i)
        if v == "no_show":
            records.append(SessionRecord(i + 1, start, Attendance.NO_SHOW))
        elif v is None or isinstance(v, str):
            records.append(SessionRecord(i + 1, start))
        else:
            records.append(SessionRecord(i + 1, start, scores=Scores.of(*v)))
    return records


def _series(root: ET.Element, index: int) -> ET.Element:
    found = [g for g in root.iter("{http://www.w3.org/2000/svg}g") if f"serie-{index} " in (g.get("class", "") + " ")]
    # pygal draws each series' line and its dots in two groups with the same class.
    return ET.Element("g", {}) if not found else _merge(found)


def _merge(groups: list[ET.Element]) -> ET.Element:
    merged = ET.Element("g")
    for g in groups:
        merged.extend(list(g))
    return merged


def _values(series: ET.Element) -> list[str]:
    return [d.text or "" for d in series.iter("{http://www.w3.org/2000/svg}desc") if d.get("class") == "value"]


def _dot_ys(series: ET.Element) -> list[float]:
    return [float(c.get("cy", "nan")) for c in series.iter("{http://www.w3.org/2000/svg}circle")]


def _path_ys(series: ET.Element) -> list[float]:
    ys = []
    for path in series.iter("{http://www.w3.org/2000/svg}path"):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", path.get("d", ""))]
        ys += numbers[1::2]
    return ys


def test_the_svg_parses_and_is_an_accessible_image_without_script() -> None:
    svg = ratings_chart_svg(_records([(9, 9, 9, 9.5), None, (8, 8.5, 9, 8)]), Decimal(36))
    root = ET.fromstring(svg)
    assert root.tag == "{http://www.w3.org/2000/svg}svg" and root.get("role") == "img"
    title, desc = root[0], root[1]
    assert title.tag.endswith("title") and title.text == "Alliance ratings by session"
    assert desc.tag.endswith("desc")
    assert desc.text == (
        "Rating totals out of 40 by session, cutoff 36.0. "
        "session 1 · 07 Jan: 36.5; session 2 · 14 Jan: no rating; session 3 · 21 Jan: 33.5."
    )
    labelled_by = (root.get("aria-labelledby") or "").split()
    assert labelled_by == [title.get("id"), desc.get("id")]
    assert not list(root.iter("{http://www.w3.org/2000/svg}script")) and "<script" not in svg


def test_the_totals_and_items_are_the_points_and_the_cutoff_is_a_flat_dashed_line_at_its_value() -> None:
    values: list[tuple[float, float, float, float] | str | None] = [
        (9.5, 9.5, 9.5, 9.5),
        (9, 9, 9, 9),  # total exactly 36: its dot sits on the cutoff line
        "no_show",  # not on the chart
        None,  # attended, no rating: a gap
        (7, 8, 8.5, 9.1),
    ]
    svg = ratings_chart_svg(_records(values), Decimal(36))
    root = ET.fromstring(svg)
    total, cutoff = _series(root, 0), _series(root, 1)
    assert _values(total) == ["38", "36", "32.6"]
    assert _values(_series(root, 2)) == ["9.5", "9", "7"]  # connection (bond), on the right axis
    assert _values(_series(root, 5)) == ["9.5", "9", "9.1"]  # overall
    cutoff_ys = _path_ys(cutoff)
    assert len(cutoff_ys) == 4 and len(set(cutoff_ys)) == 1  # one point per attended session, flat
    assert abs(_dot_ys(total)[1] - cutoff_ys[0]) < 1e-6  # at the height of a total of 36
    assert re.search(r"\.series\.serie-1\{[^}]*stroke-dasharray", svg)
    legend = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert TOTAL_SERIES in legend and cutoff_label(Decimal(36)) in legend
    x_labels = [t for t in legend if t and " · " in t]
    assert x_labels == ["1 · 07 Jan", "2 · 14 Jan", "3 · 28 Jan", "4 · 04 Feb"]


def test_a_configured_cutoff_moves_the_line() -> None:
    records = _records([(8.5, 8.5, 8.5, 8.5), (9, 9, 9, 9)])  # totals 34 and 36
    root = ET.fromstring(ratings_chart_svg(records, Decimal(34)))
    assert abs(_dot_ys(_series(root, 0))[0] - _path_ys(_series(root, 1))[0]) < 1e-6
    assert cutoff_label(Decimal(34)) in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


def test_no_sessions_is_a_chart_that_says_so() -> None:
    root = ET.fromstring(ratings_chart_svg([], Decimal(36)))
    assert root[1].text == "No attended sessions yet."
    assert "No ratings yet" in [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]


tenths = st.integers(min_value=0, max_value=100).map(lambda n: Decimal(n) / 10)
rows = st.lists(st.one_of(st.none(), st.builds(Scores, tenths, tenths, tenths, tenths)), max_size=15)
ALLOWED_TEXT = re.compile(
    r"^(Alliance ratings by session|Session|Total|No ratings yet|Total \(0-40\)|Cutoff \d+\.\d|"
    r"(Connection|Goals and topics|Way of working|Overall) \(0-10\)|\d+(\.\d+)?|\d+ · \d\d [A-Z][a-z]{2})$"
)


@given(rows)
def test_every_text_in_the_svg_is_a_number_a_date_or_a_fixed_label(scores: list[Scores | None]) -> None:
    # Nothing that could name a client: every text node is one of the chart's own labels.
    records = [SessionRecord(i + 1, T0 + timedelta(weeks=i), scores=s) for i, s in enumerate(scores)]
    root = ET.fromstring(ratings_chart_svg(records, Decimal(36)))
    for node in root.iter("{http://www.w3.org/2000/svg}text"):
        assert node.text is None or ALLOWED_TEXT.match(node.text), node.text
    assert len(_values(_series(root, 0))) == sum(s is not None for s in scores)
