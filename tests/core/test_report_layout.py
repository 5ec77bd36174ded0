"""report.html's layout in real headless Chromium at 1400 px and 800 px: the page never scrolls sideways, long
node names wrap whole (never cut), and every number the CLI printed for a target is in the page's text.

One real `edgeport convert --layers` of the digits example (tflite:int8 and onnx:int8, with labels): its
per-layer table names TF nodes such as `StatefulPartitionedCall/digits_cnn_1/dense_1/Relu` and reached
1008 px at an 800 px viewport before the table cells wrapped.
"""

from __future__ import annotations

import json
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless=new", "--disable-gpu", "--no-first-run"]
TARGETS = ("tflite:int8", "onnx:int8")
WIDTHS = (1400, 800)
NUMBER = re.compile(r"\d+(?:\.\d+)?")


@pytest.fixture(scope="module")
def cli_run(digits, tmp_path_factory):
    """(OUT, the CLI's stdout) of one real run with --layers."""
    out = tmp_path_factory.mktemp("layout") / "out"
    edgeport = Path(sys.executable).with_name("edgeport")
    command = [str(edgeport), "convert", str(digits / "saved_model"), *(a for t in TARGETS for a in ("-t", t))]
    command += ["--data", str(digits / "holdout.npz"), "--calibration", str(digits / "calibration.npz")]
    command += ["--labels", str(digits / "holdout_labels.npy"), "--layers", "--min-runs", "20", "--min-seconds"]
    command += ["0.2", "--no-history", "-o", str(out)]
    environment = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}  # one table row per line
    done = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return out, done.stdout


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is not installed: `make test` installs it (edgeport setup)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def cli_numbers(stdout: str) -> dict[str, set[str]]:
    """{target: the numbers of its row in the final table and of the summary lines naming it}."""
    numbers: dict[str, set[str]] = {target: set() for target in TARGETS}
    table_started = False
    for line in stdout.splitlines():
        table_started = table_started or line.startswith("┏")
        if not table_started:
            continue  # progress lines (their timings and noise figures are not the result)
        cells = [cell.strip() for cell in line.strip("│ ").split("│")]
        for target in TARGETS:
            if cells and cells[0] == target:
                numbers[target] |= set(NUMBER.findall(" ".join(cells[1:])))
            elif line.startswith(f"{target}: "):
                numbers[target] |= set(NUMBER.findall(line[len(target) + 2 :]))
    return numbers


def png_width(path: Path) -> int:
    with path.open("rb") as file:
        header = file.read(24)
    return struct.unpack(">I", header[16:20])[0]


@pytest.mark.parametrize("width", WIDTHS)
def test_report_fits_the_window_and_says_what_the_cli_said(cli_run, browser, width, tmp_path):
    out, stdout = cli_run
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto((out / "report.html").resolve().as_uri(), wait_until="load")
    screenshot = tmp_path / f"report-{width}.png"
    page.screenshot(path=str(screenshot), full_page=True)

    scroll_width, inner_width = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert scroll_width <= inner_width == width, f"the page is {scroll_width} px wide in a {width} px window"
    assert png_width(screenshot) == width
    clipped = page.evaluate(
        "[...document.querySelectorAll('td, th, #layers-table')].filter(e => e.scrollWidth > e.clientWidth + 1)"
        ".map(e => e.textContent.slice(0, 80))"
    )
    assert clipped == [], clipped  # every cell shows all it holds; the per-layer table needs no inner scroll

    text = page.inner_text("body")
    report = json.loads((out / "report.json").read_text())
    names = [
        name
        for target in report["targets"]
        for name in [target["layers"].get("first_divergent"), *target["layers"].get("worst", [])]
        if name
    ]
    assert names and any(len(name) > 40 for name in names), names
    flat = " ".join(text.split())
    assert all(name in flat for name in names), [name for name in names if name not in flat]

    said = cli_numbers(stdout)
    for target in TARGETS:
        assert len(said[target]) >= 8, (target, said[target], stdout)  # size, cosine, top-1, p50, p90 and more
        missing = sorted(n for n in said[target] if n not in flat)
        assert missing == [], f"{target}: the CLI said {missing}, the page at {width} px does not"
