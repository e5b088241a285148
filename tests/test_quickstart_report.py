"""The quickstart HTML report: sections, formatting, escaping, offline-ness, and the SVG line chart."""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from tunesmith.reporting.chart import line_chart
from tunesmith.quickstart.report import ConfusionView, Example, MetricRow, ReportData, render, write

SVG = "{http://www.w3.org/2000/svg}"
XSS = "<script>alert(1)</script>"
VOID = {"meta", "br", "hr", "img", "input", "link", "col", "wbr"}
SECTIONS = ["summary", "metrics", "notes", "curves", "confusions", "examples", "merge", "stages", "facts"]


def _data() -> ReportData:
    return ReportData(
        title="tunesmith quickstart",
        summary="Fine-tuning lifted JSON validity from 0% to 97%",
        facts=[("model size", "1.2M parameters"), ("data fingerprint", "ab12cd34")],
        curves={
            "Fine-tuning loss": {"train": [(1, 3.2), (2, 2.1), (3, 1.4)], "eval": [(3, 1.9)]},
            f"Base pretraining loss {XSS}": {"train": [(0, 5.0), (10, 3.0)]},
        },
        metrics=[
            MetricRow("planning", "json_valid", 0.0, 0.973, main=True),
            MetricRow("tickets", "accuracy", 0.875, 0.5),
            MetricRow("qa", "false_abstain", 0.4, 0.1, higher_is_better=False),
            MetricRow("qa", "exact_match", None, 0.25),
        ],
        confusions=[ConfusionView("tickets", ["billing", "bug"], ["billing", "bug", "invalid"],
                                  base=[[1, 0, 7], [0, 2, 6]], tuned=[[8, 0, 0], [1, 7, 0]])],
        examples=[Example("qa", "Spec sheet:\n  voltage: 24V\nQ: max current?", "Not found in context",
                          f"answer {XSS}", "Not found in context", base_ok=False, tuned_ok=True)],
        merge={"passed": True, "max_abs_diff": 3.2e-7, "tolerance": 1e-4, "prompts": 8},
        stages=[("pretrain base", 12.5), ("fine-tune", 90.0)],
        notes=["json_valid: share of outputs that parse as JSON."],
    )


class _Balance(HTMLParser):
    """Records nesting errors: every non-void start tag must be closed, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.seen: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.seen.add(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:]}")
        else:
            self.stack.pop()


@pytest.fixture(scope="module")
def page() -> str:
    return render(_data())


def test_sections_present_in_order(page: str) -> None:
    positions = [page.index(f'id="{name}"') for name in SECTIONS]
    assert positions == sorted(positions)
    assert "Fine-tuning lifted JSON validity from 0% to 97%" in page
    assert "1.2M parameters" in page and "ab12cd34" in page
    assert "json_valid: share of outputs that parse as JSON." in page
    assert page.count("<figure><svg") == 2


def test_metrics_as_percentages_with_coloured_deltas(page: str) -> None:
    assert "97.3%" in page and "0.0%" in page and "87.5%" in page and "25.0%" in page
    assert re.search(r'class="num better">\+97\.3 pp<', page)
    assert re.search(r'class="num worse">-37\.5 pp<', page)
    assert re.search(r'class="num better">-30\.0 pp<', page)  # lower is better: a drop is an improvement
    assert re.search(r"<td>qa</td><td>exact_match</td><td class=\"num\">\u2014</td>", page)
    main_rows = re.findall(r'<tr class="main"><td>([^<]*)</td>', page)
    assert main_rows == ["planning"]


def test_untrusted_text_is_escaped(page: str) -> None:
    assert "<script" not in page
    assert "answer &lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "Base pretraining loss &lt;script&gt;" in page  # chart titles are escaped too
    assert "<pre>Spec sheet:\n  voltage: 24V\nQ: max current?</pre>" in page  # whitespace kept


def test_page_is_offline(page: str) -> None:
    assert re.findall(r"https?://[^\s\"'<>]*", page) == ["http://www.w3.org/2000/svg"] * 2
    assert "@import" not in page and "url(" not in page and "<link" not in page


def test_page_is_well_formed(page: str) -> None:
    parser = _Balance()
    parser.feed(page)
    parser.close()
    assert parser.errors == [] and parser.stack == []
    assert {"table", "svg", "polyline", "circle", "pre"} <= parser.seen


def test_confusion_examples_merge_and_timings(page: str) -> None:
    assert page.count('<table class="matrix">') == 2
    assert re.search(r'<td class="hit" style="background: rgba\(0,114,178,0\.68\)">8</td>', page)
    assert re.search(r'<td class="miss" style="background: rgba\(213,94,0,0\.53\)">6</td>', page)
    assert "\u2717 wrong" in page and "\u2713 right" in page
    assert "3.20e-07" in page and "1.00e-04" in page and ">passed<" in page
    assert "12.5 s" in page and "1 min 30 s" in page and "1 min 42 s" in page
    failed = _data()
    failed.merge = {"passed": False, "max_abs_diff": 0.5, "tolerance": 1e-4, "prompts": 8}
    assert ">FAILED<" in render(failed)


def test_write_is_utf8(tmp_path: Path) -> None:
    out = write(_data(), tmp_path / "sub" / "report.html")
    assert out == tmp_path / "sub" / "report.html"
    assert out.read_text(encoding="utf-8") == render(_data())


def test_bad_confusion_shape_is_refused() -> None:
    with pytest.raises(ValueError, match="expected 2 rows of 3"):
        ConfusionView("t", ["a", "b"], ["a", "b", "c"], base=[[1, 2, 3]], tuned=[[1, 2, 3], [4, 5, 6]])


def _view_box(svg: ET.Element) -> tuple[float, float, float, float]:
    x, y, w, h = (float(v) for v in svg.attrib["viewBox"].split())
    return x, y, x + w, y + h


def _points(line: ET.Element) -> list[tuple[float, float]]:
    return [(float(a), float(b)) for a, b in (p.split(",") for p in line.attrib["points"].split())]


def test_line_chart_geometry() -> None:
    svg = ET.fromstring(line_chart({"train": [(3, 1.0), (1, 3.0), (2, 2.0), (4, float("nan")), (5, math.inf)],
                                    "eval": [(2, 2.5)], "none": []},
                                   title="loss", x_label="step", y_label="loss"))
    assert svg.find(f"{SVG}title").text == "loss"
    x0, y0, x1, y1 = _view_box(svg)
    (line,) = svg.iter(f"{SVG}polyline")
    points = _points(line)
    assert len(points) == 3  # the two non-finite points are skipped
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in points)
    assert [x for x, _ in points] == sorted(x for x, _ in points)  # drawn in ascending x
    assert points[0][1] < points[1][1] < points[2][1]  # falling loss is drawn downward (svg y grows)
    (circle,) = svg.iter(f"{SVG}circle")
    assert x0 <= float(circle.attrib["cx"]) <= x1 and y0 <= float(circle.attrib["cy"]) <= y1
    legend = [t.text for t in svg.find(f"{SVG}g[@class='legend']").iter(f"{SVG}text")]
    assert legend == ["train", "eval"]


@pytest.mark.parametrize("ys", [(0.0, 1.0), (2.31, 2.35), (5.0, 5.0), (1e-7, 3e-7), (1.0, 3000.0)])
def test_line_chart_ticks_are_nice(ys: tuple[float, float]) -> None:
    svg = ET.fromstring(line_chart({"s": [(0, ys[0]), (7, ys[1])]}, title="t", x_label="x", y_label="y"))
    for cls in ("tick-x", "tick-y"):
        values = [float(t.text) for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == cls]
        assert 4 <= len(values) <= 6
        steps = {round(b - a, 12) for a, b in zip(values, values[1:])}
        (step,) = {round(s / 10 ** math.floor(math.log10(s)), 6) for s in steps}
        assert step in {1.0, 2.0, 2.5, 5.0}
    y_values = [float(t.text) for t in svg.iter(f"{SVG}text") if t.attrib.get("class") == "tick-y"]
    assert y_values[0] <= ys[0] and y_values[-1] >= ys[1]


@pytest.mark.parametrize("series", [{}, {"train": []}, {"train": [(1, float("nan")), (float("inf"), 2.0)]}])
def test_line_chart_without_data(series: dict[str, list[tuple[float, float]]]) -> None:
    out = line_chart(series, title="empty", x_label="x", y_label="y")
    svg = ET.fromstring(out)
    assert "no data" in out
    assert svg.find(f".//{SVG}polyline") is None and svg.find(f".//{SVG}circle") is None


def _probe_result(passed_by_category: dict[str, list[bool]]):
    from tunesmith.evaluate.probes.core import ProbeResult

    categories = {name: {"n": len(flags), "passed": sum(flags), "accuracy": sum(flags) / len(flags)}
                  for name, flags in passed_by_category.items()}
    flags = [f for fs in passed_by_category.values() for f in fs]
    return ProbeResult("general.jsonl", [object()] * len(flags), sum(flags) / len(flags), categories)


class _Eval:
    def __init__(self, probes):
        self.probes = probes


def test_forgetting_probe_fails_a_drop_beyond_ten_points() -> None:
    from tunesmith.quickstart.summary import forgetting

    base = _probe_result({"arithmetic": [True] * 8 + [False] * 2, "capitals": [True] * 10})  # 90 %
    kept = _probe_result({"arithmetic": [True] * 7 + [False] * 3, "capitals": [True] * 10})  # 85 %: -5 points
    lost = _probe_result({"arithmetic": [True] * 4 + [False] * 6, "capitals": [True] * 10})  # 70 %: -20 points
    ok = forgetting({"base": _Eval(base), "tuned": _Eval(kept)})
    assert ok["passed"] and ok["drop"] == pytest.approx(0.05) and ok["n"] == 20
    assert ok["categories"]["arithmetic"] == {"base": 0.8, "tuned": 0.7}
    bad = forgetting({"base": _Eval(base), "tuned": _Eval(lost)})
    assert not bad["passed"] and bad["drop"] == pytest.approx(0.20) and bad["max_drop"] == pytest.approx(0.10)
    assert forgetting({"base": _Eval(None), "tuned": _Eval(lost)}) is None
