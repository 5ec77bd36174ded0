"""report.html from a real digits run, opened in real headless Chromium: loads clean, verdicts agree with
junit.xml and summary.md, plots are inline SVG; without matplotlib the page still has every table."""

from __future__ import annotations

import dataclasses
import html
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from digits_runs import DIGITS_TARGETS, digits_report_once

from edgeport.report.files import StageResult
from edgeport.report.html import NO_PLOTS, render, write_html

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless=new",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
STATUS_WORD = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip"}


@pytest.fixture(scope="session")
def digits_report(digits, tmp_path_factory):
    return digits_report_once(digits, tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: `make test` installs it (edgeport setup)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def open_page(browser, html_file: Path, screenshot: Path):
    """Load the page; return (page, console messages, requests other than the page itself)."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    messages, requests = [], []
    page.on("console", lambda message: messages.append((message.type, message.text)))
    page.on("pageerror", lambda error: messages.append(("pageerror", str(error))))
    page.on("request", lambda request: requests.append(request.url))
    url = html_file.resolve().as_uri()
    page.goto(url, wait_until="load")
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(screenshot), full_page=True)
    return page, messages, [r for r in requests if r != url]


def verdict_rows(page) -> dict[str, dict[str, str]]:
    return page.eval_on_selector_all(
        "#verdicts tbody tr[data-verdict]",
        "rows => Object.fromEntries(rows.map(r => [r.dataset.target, Object.fromEntries("
        "[...r.querySelectorAll('td[data-stage]')].map(td => [td.dataset.stage, td.dataset.status]))]))",
    )


def test_report_html_loads_clean_in_chromium_and_agrees_with_junit_and_summary(digits_report, browser, tmp_path):
    out = digits_report.out
    html_file = out / "report.html"
    assert html_file.is_file(), "the pipeline writes report.html next to report.json"
    screenshot = tmp_path / "test-artifacts" / "report.png"
    page, messages, requests = open_page(browser, html_file, screenshot)

    assert [m for m in messages if m[0] in ("error", "pageerror", "warning")] == []
    assert requests == [], "the page must not load anything: it is self-contained"
    assert screenshot.stat().st_size > 10_000

    first_table = page.eval_on_selector("body", "b => b.querySelector('table').id")
    assert first_table == "verdicts", "the page opens with the verdict table"
    rows = verdict_rows(page)
    assert list(rows) == list(DIGITS_TARGETS)
    assert page.locator('#verdicts tr[data-target="savedmodel"]').count() == 1

    # junit.xml: the same targets and the same status per stage
    junit = {}
    for case in ET.parse(out / "junit.xml").getroot().iter("testcase"):
        status = (
            "failed"
            if case.find("failure") is not None
            else "error"
            if case.find("error") is not None
            else "skipped"
            if case.find("skipped") is not None
            else "passed"
        )
        junit.setdefault(case.get("classname").removeprefix("edgeport."), {})[case.get("name")] = status
    assert junit == rows

    # summary.md: one row per target with the same stage words
    summary = (out / "summary.md").read_text()
    for target, stages in rows.items():
        line = next(line for line in summary.splitlines() if line.startswith(f"| {target} |"))
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert [c.split(":")[0] for c in cells[1:4]] == [STATUS_WORD[stages[s]] for s in ("convert", "check", "bench")]
    verdict = page.inner_text("#run-verdict")
    assert summary.startswith(f"# edgeport: {verdict}")
    assert verdict == "passed" and digits_report.report.exit_code == 0


def test_report_html_has_size_accuracy_agreement_and_latency_plots(digits_report, browser, tmp_path):
    page, _, _ = open_page(browser, digits_report.out / "report.html", tmp_path / "test-artifacts" / "plots.png")
    report = digits_report.report
    # one latency overview, then per target an error histogram per output and a latency plot
    outputs = sum(len(t.accuracy.outputs) for t in report.targets)
    assert page.locator("div.plot svg").count() == 1 + outputs + len(report.targets)
    ids = page.eval_on_selector_all("[id]", "nodes => nodes.map(n => n.id)")
    assert len(ids) == len(set(ids)), "several inline SVGs must not share an id"
    for target in report.targets:
        section = page.locator(f'section[data-target="{target.name}"]')
        share = target.size_bytes / report.model["size_bytes"]
        assert f"{share:.1%} of the SavedModel" in section.inner_text()
        assert f"{target.accuracy.outputs[0].cosine:.6f}" in section.locator("table.accuracy").inner_text()
        assert section.locator("div.plot svg").count() == len(target.accuracy.outputs) + 1
    int8 = page.locator('section[data-target="tflite:int8"] ul.agreement').inner_text()
    top1 = report.target("tflite:int8").accuracy.outputs[0].top1_agreement
    assert f"top-1 {top1:.1%}" in int8
    assert page.locator('section[data-target="tflite"] ul.agreement').count() == 0, "fp32 has no agreement block"
    # latency plots show the SavedModel next to the target: both names are text inside the SVG
    svg_text = page.locator('section[data-target="tflite"] div.plot svg').last.text_content()
    assert "savedmodel (tensorflow)" in svg_text and "tflite" in svg_text


def test_failed_target_shows_reason_first_and_page_still_renders(digits_report, browser, tmp_path):
    report = digits_report.report
    broken = dataclasses.replace(
        report.target("tflite:int8"),
        accuracy=None,
        latency=None,
        stages=(
            StageResult("convert", "passed", 0.5),
            StageResult("check", "failed", 0.1, "output_0: cosine 0.5 < 0.95"),
            StageResult("bench", "skipped", 0, "check failed"),
        ),
    )
    failed = dataclasses.replace(report, targets=(report.target("tflite"), broken), exit_code=1)
    path = write_html(failed, tmp_path / "run")
    page, messages, _ = open_page(browser, path, tmp_path / "test-artifacts" / "failed.png")
    assert messages == []
    assert verdict_rows(page)["tflite:int8"] == {"convert": "passed", "check": "failed", "bench": "skipped"}
    row = page.inner_text('#verdicts tr[data-target="tflite:int8"]')
    assert "FAIL" in row and "cosine 0.5 < 0.95" in row
    assert page.inner_text("#run-verdict") == "FAILED (a gate)"
    assert [p.name for p in path.parent.iterdir()] == ["report.html"], "atomic write leaves no temp file"


def test_without_matplotlib_the_page_says_so_and_keeps_the_tables(digits_report, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    page = render(digits_report.report)
    assert html.escape(NO_PLOTS) in page and 'id="no-plots"' in page
    assert "<svg" not in page
    assert 'id="verdicts"' in page and page.index('id="verdicts"') < page.index('id="no-plots"')
    assert len(re.findall(r'<section id="target-', page)) == len(DIGITS_TARGETS)


def test_degenerate_latencies_and_a_failing_plot_never_cost_the_page(digits_report):
    from edgeport.report.html import _Plotter

    report = digits_report.report
    tflite, int8 = report.target("tflite"), report.target("tflite:int8")
    flat = dataclasses.replace(tflite, latency=dataclasses.replace(tflite.latency, run_ms=(0.02,) * 5))
    empty = dataclasses.replace(int8, latency=dataclasses.replace(int8.latency, run_ms=()))
    page = render(dataclasses.replace(report, targets=(flat, empty)))
    assert "plot not drawn" not in page and page.count("<svg") >= 3
    note = _Plotter.create().figure(lambda plt: 1 / 0)
    assert note.startswith('<p class="note">plot not drawn: ZeroDivisionError')
