"""The overview's SVG charts: well-formed, labelled, proportional, escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from statestore.server.ui.charts import Bar, bar_chart, column_chart, format_count

NS = {"svg": "http://www.w3.org/2000/svg"}


def parse(markup: str) -> ET.Element:
    return ET.fromstring(markup)


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text")]


def rects(root: ET.Element) -> list[ET.Element]:
    # The hatch pattern's own rect is in <defs>: only the bars count.
    return [r for g in root.findall("svg:g", NS) for r in g.findall("svg:rect", NS)]


def test_bar_chart_is_an_accessible_image_with_every_number_as_text() -> None:
    bars = [Bar("dag_a", 300, "300 keys"), Bar("dag_b", 150), Bar("dag_c", 0)]
    root = parse(bar_chart("dags", "Keys per dag", "Three dags by keys", bars))
    assert root.get("role") == "img"
    assert root.get("aria-labelledby") == "dags-title dags-desc"
    assert root.findtext("svg:title", namespaces=NS) == "Keys per dag"
    assert root.findtext("svg:desc", namespaces=NS) == "Three dags by keys"
    assert root.get("width") == "100%"
    assert root.get("viewBox", "").startswith("0 0 360 ")
    assert texts(root) == ["dag_a", "300 keys", "dag_b", "150", "dag_c", "0"]
    widths = [float(r.get("width", "")) for r in rects(root)]
    assert widths[0] == pytest.approx(2 * widths[1])
    assert widths[2] == 0
    tips = [g.findtext("svg:title", namespaces=NS) for g in root.findall("svg:g", NS)]
    assert tips == ["dag_a: 300 keys", "dag_b: 150", "dag_c: 0"]


def test_bar_kinds_differ_by_pattern_not_colour_alone() -> None:
    root = parse(bar_chart("exp", "Expiry", "d", [Bar("expired", 5, kind="warn"), Bar("d", 5)]))
    fills = [r.get("fill") for r in rects(root)]
    assert fills[0] == "url(#exp-hatch)"
    assert fills[1] != fills[0]
    assert root.find("svg:defs/svg:pattern", NS) is not None
    assert "expired" in texts(root)  # the label says it too


def test_labels_are_escaped_and_long_ones_shortened_with_the_full_text_in_the_tooltip() -> None:
    hostile = "<script>alert(1)</script>&more-than-sixteen-characters"
    markup = bar_chart("x", "t <b>", "d & e", [Bar(hostile, 1)])
    assert "<script>" not in markup
    assert "<b>" not in markup
    root = parse(markup)  # still well-formed
    assert root.findtext("svg:title", namespaces=NS) == "t <b>"
    label = texts(root)[0]
    assert len(label) == 16
    assert label.endswith("…")
    assert root.find("svg:g/svg:title", NS).text == f"{hostile}: 1"  # type: ignore[union-attr]


def test_empty_charts_say_so() -> None:
    assert "No keys." in texts(parse(bar_chart("e", "t", "d", [])))
    assert "No writes." in texts(parse(column_chart("w", "t", "d", [Bar("1 Dec", 0)])))


def test_column_chart_scales_to_the_peak_and_labels_from_the_end() -> None:
    days = [Bar(f"{d} Dec", v) for d, v in zip(range(1, 15), [0, 5, 10] + [1] * 11, strict=True)]
    root = parse(column_chart("writes", "Writes per day", "14 days", days))
    heights = [float(r.get("height", "")) for r in rects(root)]
    assert len(heights) == 14
    assert heights[0] == 0
    assert heights[2] == pytest.approx(2 * heights[1])
    labels = texts(root)
    assert labels[:2] == ["0", "10"]  # the axis: zero and the peak
    assert labels[-1] == "14 Dec"  # the last day is always labelled
    assert len(labels) - 2 == 4  # four day labels (14, 10, 6, 2 Dec), not fourteen
    assert labels[2:] == ["2 Dec", "6 Dec", "10 Dec", "14 Dec"]
    tips = [g.findtext("svg:title", namespaces=NS) for g in root.findall("svg:g", NS)]
    assert tips[2] == "3 Dec: 10"


def test_chart_ids_are_checked() -> None:
    with pytest.raises(ValueError, match="chart id"):
        bar_chart('x" onload="alert(1)', "t", "d", [])


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (950, "950"), (1000, "1k"), (12_345, "12.3k"), (4_500_000, "4.5M"), (2e9, "2G")],
)
def test_format_count(value: float, text: str) -> None:
    assert format_count(value) == text
