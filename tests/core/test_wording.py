"""Every number a person reads is worded by one function (report/wording): sizes, speed ratios, durations,
latencies, shares and percentage points; report.html, summary.md, the CLI, `compare` and the fleet's files
use them. The rendering tests build a Report from records, as a run of a tfjs target 2.7x slower than the
SavedModel with labels and a max_accuracy_drop gate would produce it."""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from rich.console import Console

from edgeport.checks.accuracy import AccuracyResult, OutputMetrics
from edgeport.checks.latency import LatencyStats
from edgeport.checks.task import TaskAccuracy
from edgeport.data import Precision
from edgeport.report import wording
from edgeport.report.files import Report, StageResult, TargetResult, summary_markdown, task_lines
from edgeport.report.regression import Thresholds, compare_reports, print_comparison

GB, TB = 1 << 30, 1 << 40

# ---- the wording functions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_bytes, said",
    [
        (None, "–"),
        (0, "0 B"),
        (1, "1 B"),
        (1023, "1023 B"),
        (1024, "1.0 KB"),
        (45_672, "44.6 KB"),
        (1024 * 1024 - 1, "1.0 MB"),  # 1023.999 KB would read "1024.0 KB"
        (28 * (1 << 20), "28.0 MB"),
        (int(7.75 * GB), "7.75 GB"),
        (3 * TB, "3.00 TB"),
        (5000 * TB, "5,000.00 TB"),
        (-2048, "-2.0 KB"),
        (float("inf"), "∞"),
        (float("nan"), "nan"),
    ],
)
def test_size(n_bytes, said):
    assert wording.size(n_bytes) == said


@pytest.mark.parametrize(
    "value, reference, said",
    [
        (91.6, 33.72, "2.7x slower"),  # the reported report.html said "0.37x slower" here
        (33.72, 91.6, "2.7x faster"),
        (1.4, 1.0, "1.4x slower"),
        (1.0, 1.4, "1.4x faster"),
        (1.0, 1.0, "same speed"),
        (1.04, 1.0, "same speed"),  # 1.0x to the shown precision
        (1.0, 1.04, "same speed"),
        (1.05 + 1e-9, 1.0, "1.1x slower"),
        (9.96, 1.0, "10x slower"),
        (12_345.0, 0.001, "12,345,000x slower"),
        (0.001, 12_345.0, "12,345,000x faster"),
        (None, 1.0, "–"),
        (1.0, None, "–"),
        (0.0, 1.0, "no speed ratio (a time of 0)"),
        (1.0, 0.0, "no speed ratio (a time of 0)"),
        (0.0, 0.0, "no speed ratio (a time of 0)"),
        (float("inf"), 1.0, "no speed ratio (a time not measured)"),
        (-1.0, 1.0, "no speed ratio (a time not measured)"),
    ],
)
def test_ratio_words_speed_on_both_sides_of_1(value, reference, said):
    assert wording.ratio(value, reference) == said


def test_ratio_names_what_it_compares_with():
    assert wording.ratio(91.6, 33.72, than="the SavedModel") == "2.7x slower than the SavedModel"
    assert wording.ratio(2.0, 2.0, than="the SavedModel") == "same speed as the SavedModel"
    assert wording.ratio(2.0, 0.0, than="the SavedModel") == "no speed ratio to the SavedModel (a time of 0)"
    assert wording.ratio(None, 1.0, than="the SavedModel") == "–"


@pytest.mark.parametrize(
    "value, reference, said",
    [(1.0, 4.0, "0.25x"), (4.0, 4.0, "1.00x"), (10.0, 4.0, "2.50x"), (5e6, 1.0, "5,000,000x"), (0, 4, "0.00x")],
)
def test_times_for_sizes(value, reference, said):
    assert wording.times(value, reference) == said
    assert wording.times(1.0, 0) == "no ratio (a reference of 0)" and wording.times(None, 1.0) == "–"


@pytest.mark.parametrize(
    "seconds, said",
    [
        (None, "–"),
        (0, "0 s"),
        (0.0000004, "0.4 µs"),
        (0.0004, "0.400 ms"),
        (0.53, "530 ms"),
        (0.9996, "1.0 s"),  # 999.6 ms would read "1000 ms"
        (3.24, "3.2 s"),
        (9.96, "10 s"),
        (36.4, "36 s"),
        (59.6, "1 min 00 s"),
        (66, "1 min 06 s"),
        (3599.6, "1 h 00 min"),
        (3 * 86400 + 4 * 3600, "3 d 04 h"),
        (1e9, "11,574 d 01 h"),
        (-5, "-5.0 s"),
        (float("inf"), "∞"),
    ],
)
def test_duration(seconds, said):
    assert wording.duration(seconds) == said


@pytest.mark.parametrize(
    "ms, said",
    [
        (None, "–"),
        (0, "0.000 ms"),
        (0.006, "6 µs"),  # 3 decimals of ms would round it to one digit
        (0.00612, "6.12 µs"),
        (0.0456, "45.6 µs"),
        (0.0999, "99.9 µs"),
        (0.09996, "0.100 ms"),  # 100 µs: back to ms
        (0.1, "0.100 ms"),
        (0.412, "0.412 ms"),
        (33.72, "33.720 ms"),
        (1234.5, "1,234.500 ms"),
        (-0.006, "-6 µs"),
        (float("inf"), "∞"),
        (float("nan"), "nan"),
    ],
)
def test_latency_ms(ms, said):
    assert wording.latency_ms(ms) == said


@pytest.mark.parametrize(
    "fraction, said",
    [(0.0133, "1.33 pp"), (0.0, "0.00 pp"), (-0.0, "0.00 pp"), (-1e-9, "0.00 pp"), (-0.0067, "-0.67 pp")],
)
def test_points(fraction, said):
    assert wording.points(fraction) == said
    assert wording.points(None) == "–"


def test_percent():
    assert wording.percent(0.97333, 2) == "97.33%" and wording.percent(1.0) == "100.0%"
    assert wording.percent(0) == "0.0%" and wording.percent(None) == "–"


def test_the_module_imports_nothing_heavy():
    code = (
        "import sys, edgeport.report.wording; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'rich', 'tensorflow', 'click')))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
    source = Path(wording.__file__).read_text()
    assert not re.search(r"^\s*(from|import) edgeport", source, re.M), "wording imports nothing of edgeport"


def test_no_other_byte_formatter_is_left():
    root = Path(wording.__file__).parents[2]
    found = []
    for folder in ("edgeport", "converters", "targets"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text()
            if re.search(r"def (_?human\w*|_size_text|format_bytes)\(", text) or "human_bytes" in text:
                found.append(str(path.relative_to(root)))
    assert found == []


# ---- a report, rendered -----------------------------------------------------------------------------------


def stats(p50: float, runtime: str) -> LatencyStats:
    return LatencyStats(
        runs=50,
        p50_ms=p50,
        p90_ms=p50 * 1.1,
        p99_ms=p50 * 1.3,
        mean_ms=p50 * 1.02,
        std_ms=p50 * 0.05,
        min_ms=p50 * 0.9,
        max_ms=p50 * 1.5,
        throughput_per_s=1000 / p50,
        load_ms=120.0,
        first_inference_ms=p50 * 3,
        warmup_runs=5,
        peak_rss_mb=412.0,
        runtime_version=runtime,
        cpu="test cpu",
        run_ms=tuple(p50 * (1 + 0.01 * (i % 7)) for i in range(50)),
    )


def accuracy(drop: float, max_drop: float | None) -> AccuracyResult:
    output = OutputMetrics(
        name="scores",
        shape=(150, 10),
        max_abs_error=1e-6,
        mean_abs_error=1e-7,
        rmse=2e-7,
        cosine=0.999999,
        snr_db=120.0,
        top1_agreement=1.0,
        top5_agreement=1.0,
        abs_error_histogram=((0.0, 1e-6), (1500,)),
    )
    task = TaskAccuracy(
        metric="top1",
        output="scores",
        samples=150,
        reference=0.97333,
        artifact=0.97333 - drop,
        drop=drop,
        reference_top5=1.0,
        artifact_top5=1.0,
        max_drop=max_drop,
        passed=max_drop is None or drop <= max_drop,
    )
    return AccuracyResult(True, 150, Precision(min_cosine=0.999), (output,), (), task=task)


def target(name: str, p50: float, size_bytes: int, drop: float, max_drop: float | None) -> TargetResult:
    return TargetResult(
        name=name,
        converter=name.split(":")[0],
        variant="",
        runtime=name.split(":")[0],
        stages=(
            StageResult("convert", "passed", 2.5),
            StageResult("check", "passed", 0.53),
            StageResult("bench", "passed", 66),
        ),
        precision="fp32",
        size_bytes=size_bytes,
        files=("model.bin",),
        accuracy=accuracy(drop, max_drop),
        latency=stats(p50, f"{name} 1.0"),
    )


@pytest.fixture()
def report() -> Report:
    return make_report()


def make_report() -> Report:
    return Report(
        model={
            "path": "/models/digits",
            "mode": "tf2",
            "size_bytes": 28 * (1 << 20),
            "signature": {"key": "serving_default"},
        },
        samples={
            "count": 150,
            "source": "holdout.npz",
            "synthetic": False,
            "labels": {"count": 150, "source": "holdout.npz:labels", "top1": 0.97333, "top5": 1.0},
        },
        calibration=None,
        targets=(
            target("tfjs", 91.6, 45_672, 0.0, 0.01),
            target("tflite", 24.0, 28 * (1 << 20), 0.0133, 0.01),
            target("onnx", 0.006, 2048, 0.0, None),
        ),
        exit_code=0,
        created="2025-01-01T00:00:00+00:00",
        machine={"cpu": "test cpu", "platform": "linux", "python": "3.11", "threads": 1},
        edgeport_version="0",
        baseline=stats(33.72, "tensorflow 2.x"),
    )


def text_of(page: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def test_report_html_words_the_speed_ratio_the_right_way_round(report):
    from edgeport.report.html import render

    page = text_of(render(report))
    assert "p50 on tfjs 1.0: 2.7x slower than the SavedModel on TensorFlow (91.600 ms against 33.720 ms)" in page
    assert "p50 on tflite 1.0: 1.4x faster than the SavedModel on TensorFlow" in page
    assert "0.37" not in page and "×" not in page
    assert "p50 on onnx 1.0: 5,620x faster" in page and "6 µs" in page
    assert "44.6 KB" in page and "28.0 MB" in page and "2.0 KB" in page
    assert "2.5 s" in page and "530 ms" in page and "1 min 06 s" in page  # stage times
    assert "412.0 MB" in page  # peak RSS


def test_report_html_shows_task_accuracy_and_the_drop_in_points(report):
    from edgeport.report.html import render

    page = render(report)
    text = text_of(page)
    assert 'id="task"' in page
    assert "task accuracy on 150 labels (holdout.npz:labels): SavedModel top-1 97.33%, top-5 100.00%" in text
    assert "tfjs: top-1 97.33%, top-5 100.00%, drop 0.00 pp (max_accuracy_drop 0.01 = 1.00 pp: passed)" in text
    assert "tflite: top-1 96.00%, top-5 100.00%, drop 1.33 pp (max_accuracy_drop 0.01 = 1.00 pp: FAILED)" in text
    section = page[page.index('<section id="target-tflite"') :]
    section = section[: section.index("</section>")]
    assert "<h3>Task accuracy</h3>" in section and "drop 1.33 pp" in text_of(section)
    assert "+0.0133" not in text and "0.0133" not in text


def test_summary_and_cli_say_the_same_words(report, monkeypatch):
    import edgeport.cli.commands as commands

    summary = summary_markdown(report)
    buffer = StringIO()
    monkeypatch.setattr(commands, "stdout", Console(file=buffer, width=250))
    commands.print_report(report, Path("out"), as_json=False)
    cli = buffer.getvalue()
    speed = (
        "p50 against the SavedModel on TensorFlow (33.720 ms): tfjs 2.7x slower; tflite 1.4x faster; onnx 5,620x faster"
    )
    for text in (summary, cli):
        assert speed in text
        assert "tflite: top-1 96.00%, top-5 100.00%, drop 1.33 pp" in text
        for line in task_lines(report):
            assert line in text
        assert "44.6 KB" in text and "28.0 MB" in text and "91.600 ms" in text and "6 µs" in text
    assert "| tfjs | pass | pass | pass | 44.6 KB |" in summary


def test_bench_line_of_the_cli_words_latency_and_rss():
    """`edgeport bench` prints its statistics with latency_ms and size (not "0.006" and "412 MB")."""
    source = Path(sys.modules["edgeport.report.wording"].__file__).parents[1] / "cli" / "commands.py"
    text = source.read_text()
    assert "wording.latency_ms(stats.p50_ms)" in text and "wording.size(stats.peak_rss_mb" in text


# ---- compare ----------------------------------------------------------------------------------------------


def latency_dict(p50: float, fastest: float) -> dict:
    runs = [p50 * (1 + 0.001 * (i % 5)) for i in range(40)]
    runs[0] = fastest
    return {
        "p50_ms": p50,
        "p90_ms": p50 * 1.004,
        "min_ms": fastest,
        "run_ms": runs,
    }


def report_dict(p50: float, fastest: float, size_bytes: int = 45_672, top1: float = 0.98) -> dict:
    return {
        "schema_version": 1,
        "status": "finished",
        "model": {"path": "m"},
        "samples": {"count": 10, "source": "d.npz"},
        "machine": {"cpu": "c"},
        "targets": [
            {
                "name": "tfjs",
                "size_bytes": size_bytes,
                "stages": [{"stage": "convert", "status": "passed"}],
                "accuracy": {
                    "samples": 10,
                    "outputs": [{"name": "o", "cosine": 1.0, "snr_db": 90.0, "top1_agreement": top1}],
                },
                "latency": latency_dict(p50, fastest),
            }
        ],
    }


def printed(comparison) -> str:
    buffer = StringIO()
    print_comparison(comparison, Console(file=buffer, width=250), show_all=True)
    return buffer.getvalue()


def test_compare_says_why_a_change_is_noise_never_that_the_fastest_run_was_unchanged():
    """p50 +100 %, the fastest run +44 % but within its own allowance: noise, and the words agree."""
    old, new = report_dict(10.0, 9.0), report_dict(20.0, 12.96)
    comparison = compare_reports(old, new, Thresholds(noise=0.0, latency=0.5))
    p50 = next(c for c in comparison.changes if c.metric == "p50_ms")
    assert p50.status == "noise" and "fastest run +44%" in p50.basis
    text = printed(comparison)
    row = next(line for line in text.splitlines() if "p50_ms" in line)
    assert "fastest run within its own allowance" in row and "unchanged" not in text
    assert "+100.0% (2.0x slower)" in row and "10.000 ms" in row and "20.000 ms" in row

    under_floor = compare_reports(report_dict(0.01, 0.01), report_dict(0.02, 0.01), Thresholds(noise=0.0))
    row = next(line for line in printed(under_floor).splitlines() if "p50_ms" in line)
    assert "inconclusive (noise) (under the 0.05 ms floor)" in row and "2.0x slower" in row and "10 µs" in row


def test_compare_words_faster_sizes_and_points():
    comparison = compare_reports(
        report_dict(20.0, 18.0),
        report_dict(10.0, 9.0, 28 * (1 << 20), 0.93),
        old_name="run1/report.json",
        new_name="run2/report.json",
    )
    text = printed(comparison)
    assert "compared with the baseline run1/report.json" in text
    assert "-50.0% (2.0x faster)" in text
    assert "44.6 KB" in text and "28.0 MB" in text
    top1 = next(line for line in text.splitlines() if "top1[o]" in line)
    assert "98.0%" in top1 and "93.0%" in top1 and "-5.00 pp" in top1 and "-1.00 pp" in top1


def test_compare_names_the_missing_new_report_as_new(tmp_path):
    from click.testing import CliRunner

    from edgeport.cli.main import main

    old = tmp_path / "run2" / "report.json"
    old.parent.mkdir()
    old.write_text(json.dumps(report_dict(10.0, 9.0)))
    result = CliRunner().invoke(main, ["compare", str(old), str(tmp_path / "missing.json")])
    assert result.exit_code == 2
    assert f"new report {tmp_path / 'missing.json'} does not exist" in result.output
    assert "baseline" not in result.output.split("does not exist")[0]
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "missing.json"), str(old)])
    assert result.exit_code == 2 and f"baseline report {tmp_path / 'missing.json'} does not exist" in result.output
    (tmp_path / "bad.json").write_text("[1]")
    result = CliRunner().invoke(main, ["compare", str(old), str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "new report" in result.output and "is not an edgeport report.json" in result.output


def test_compare_names_roles_of_targets_on_one_side_only():
    old, new = report_dict(10.0, 9.0), report_dict(10.0, 9.0)
    new["targets"][0]["name"] = "onnx"
    text = printed(compare_reports(old, new))
    assert "missing: tfjs is in the baseline but not in the new report" in text
    assert "new: onnx is only in the new report: no baseline to compare with" in text


# ---- fleet ------------------------------------------------------------------------------------------------


def test_fleet_files_use_the_same_words():
    from edgeport.fleet.outputs import fleet_html, fleet_summary

    data = {
        "exit_code": 0,
        "wall_seconds": 66.0,
        "address": "embedded",
        "created": "now",
        "nodes": [{"id": "abcdef0123", "ip": "10.0.0.1", "hostname": "h", "cpu": "c"}],
        "models": [
            {
                "name": "digits",
                "node": {"id": "abcdef0123", "ip": "10.0.0.1", "hostname": "h", "cpu": "c"},
                "exit_code": 0,
                "reused": False,
                "wall_seconds": 3.24,
                "error": "",
                "report": "digits/report.json",
                "targets": [
                    {"target": "tfjs", "verdict": "passed", "size_bytes": 45_672, "worst_cosine": 1.0, "p50_ms": 0.006}
                ],
            }
        ],
    }
    summary, page = fleet_summary(data), text_of(fleet_html(data))
    assert "1 min 06 s wall" in summary and "| 3.2 s |" in summary and "passed, p50 6 µs" in summary
    assert "1 min 06 s wall" in page and "44.6 KB" in page and "p50 6 µs" in page


def _sized(size_bytes, measurements=None, details=None):
    from edgeport.report.files import StageResult, TargetResult

    passed = (StageResult("convert", "passed", 0), StageResult("check", "passed", 0))
    return TargetResult(
        "tflm",
        "tflm",
        "",
        "tflm",
        passed,
        size_bytes=size_bytes,
        measurements=measurements or {},
        details=details or {},
    )


def test_a_target_size_is_what_the_device_stores_with_the_board_fit_on_both_sides():
    from edgeport.report.files import size_cell

    assert size_cell(_sized(None)) == "–"
    assert size_cell(_sized(45_672)) == "44.6 KB"  # not a microcontroller target: its files
    board = {"board": "ESP32", "budgets": {"max_flash_bytes": 100_000, "max_arena_bytes": 20_000}}
    fits = _sized(45_672, {"arena_bytes": 12_288}, board)
    assert size_cell(fits) == "flash 44.6 KB + arena 12.0 KB; fits ESP32"
    at_the_limit = _sized(100_000, {"arena_bytes": 20_000}, board)
    assert size_cell(at_the_limit).endswith("fits ESP32")
    over_ram = _sized(45_672, {"arena_bytes": 20_001}, board)
    assert size_cell(over_ram).endswith("over ESP32's RAM")
    over_both = _sized(100_001, {"arena_bytes": 2**40}, board)
    assert size_cell(over_both) == "flash 97.7 KB + arena 1.00 TB; over ESP32's flash and RAM"
    no_board = _sized(0, {"arena_bytes": 0})
    assert size_cell(no_board) == "flash 0 B + arena 0 B"


def test_the_noise_line_says_when_the_machines_speed_moved_during_a_benchmark():
    import dataclasses

    from edgeport.report.files import noise_line

    base = {"kernel_ms": 2.0, "cv": 0.01, "load_avg": [0.5, 0.5, 0.5], "cpus": 2, "calibrations": 3}
    quiet = dataclasses.replace(make_report(), machine={"noise": {**base, "kernel_ms_after": 2.1, "noisy": False}})
    assert noise_line(quiet) == (
        "machine noise before the benchmarks: a fixed compute kernel varied by 1.0% (CV), load average 0.50 on 2 "
        "cores; quiet"
    )
    slower = {**base, "kernel_ms_after": 3.72, "noisy": True, "noisy_benchmarks": 1}
    said = noise_line(dataclasses.replace(make_report(), machine={"noise": slower}))
    assert ", load average 0.50 on 2 cores, 1.9x slower just after a benchmark than before it; noisy (1 of 3" in said
    faster = {**base, "kernel_ms_after": 1.0, "noisy": True, "noisy_benchmarks": 1}
    assert "2.0x faster just after" in noise_line(dataclasses.replace(make_report(), machine={"noise": faster}))
    old = {key: value for key, value in base.items() if key != "kernel_ms"}  # a report from before: no kernel times
    assert "just after" not in noise_line(
        dataclasses.replace(make_report(), machine={"noise": {**old, "noisy": False}})
    )
