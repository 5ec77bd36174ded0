"""litertjs-browser and ort-web on real headless Chromium (Debian's, via Playwright): the .tflite on LiteRT.js
and the .onnx on ONNX Runtime Web, on wasm and on WebGPU when this browser exposes an adapter."""

from __future__ import annotations

import pytest

from edgeport.browser import npm
from edgeport.browser import server as page_server
from edgeport.browser.chromium import browser_page
from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.contracts import RawTimings, RuntimeSettings, TimingProtocol
from edgeport.errors import RuntimeUnavailable, UsageError
from edgeport.targets.litertjs.runtime import LiteRTJSRuntime
from edgeport.targets.ortweb.runtime import ORTWebRuntime

QUICK = TimingProtocol(
    warmup_runs=2, warmup_seconds=0.0, min_runs=10, min_seconds=0.05, max_seconds=10.0, ci_half_width=0.0
)
RUNTIMES = {"litertjs-browser": (LiteRTJSRuntime, "tflite"), "ort-web": (ORTWebRuntime, "onnx")}


@pytest.fixture(scope="module")
def webgpu_adapter(web_artifacts) -> str | None:
    """The adapter this Chromium exposes under edgeport's flags (SwiftShader without a GPU), or None: asked on
    a page of edgeport's server, as WebGPU is for secure contexts (http://127.0.0.1 is one, about:blank is not)."""
    routes = ORTWebRuntime().routes()
    with page_server.serve(web_artifacts.onnx, routes) as site, browser_page("webgpu probe") as (page, _problems):
        page.goto(f"{site.base_url}/")
        return page.evaluate(
            "async () => { const a = navigator.gpu && await navigator.gpu.requestAdapter();"
            " return a ? (a.info.vendor + ' ' + a.info.architecture) : null; }"
        )


def runtime_and_artifact(name, web_artifacts):
    cls, attribute = RUNTIMES[name]
    runtime = cls()
    assert runtime.availability().available, runtime.availability().reason
    return runtime, getattr(web_artifacts, attribute)


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_fp32_artifact_matches_the_savedmodel_on_wasm(name, web_artifacts):
    runtime, artifact = runtime_and_artifact(name, web_artifacts)
    outputs = runtime.infer(artifact, web_artifacts.samples, RuntimeSettings(backend="wasm"))
    result = compare(web_artifacts.reference, outputs, default_tolerance("fp32"))
    assert result.passed, result.failures
    assert min(m.cosine for m in result.outputs) >= 0.9999


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_webgpu_checks_numerics_or_says_why_it_is_unavailable(name, web_artifacts, webgpu_adapter):
    runtime, artifact = runtime_and_artifact(name, web_artifacts)
    if webgpu_adapter is None:
        with pytest.raises(RuntimeUnavailable, match="backend webgpu unavailable here: .*WebGPU"):
            runtime.infer(artifact, web_artifacts.samples, RuntimeSettings(backend="webgpu"))
        return
    outputs = runtime.infer(artifact, web_artifacts.samples, RuntimeSettings(backend="webgpu"))
    result = compare(web_artifacts.reference, outputs, default_tolerance("fp16"))  # a GPU may compute in fp16
    assert result.passed, result.failures
    assert min(m.cosine for m in result.outputs) >= 0.999


@pytest.mark.parametrize("name", list(RUNTIMES))
def test_benchmark_on_wasm_returns_precise_raw_timings(name, web_artifacts):
    runtime, artifact = runtime_and_artifact(name, web_artifacts)
    raw = runtime.benchmark(artifact, web_artifacts.samples, RuntimeSettings(backend="wasm", threads=2), QUICK)
    assert isinstance(raw, RawTimings) and len(raw.run_ms) >= QUICK.min_runs and min(raw.run_ms) > 0
    assert raw.load_ms > 0 and raw.peak_rss_bytes > 20 * 2**20
    assert not [note for note in raw.notes if "timing resolution" in note]  # cross-origin isolated: a 5 µs timer
    assert f"{runtime.engine} {npm.installed_version(runtime.npm_package)} wasm (threaded build" in raw.runtime_version
    # what the page downloaded: the model as served, and the runtime's own files (its wasm binaries: megabytes)
    assert raw.downloaded_bytes is not None and raw.downloaded_bytes["model"] > 1000
    assert raw.downloaded_bytes["runtime"] > 2**20


def test_unknown_backend_is_a_usage_error(web_artifacts):
    runtime, artifact = runtime_and_artifact("ort-web", web_artifacts)
    with pytest.raises(UsageError, match="has no backend 'webgl'; use one of wasm, webgpu"):
        runtime.infer(artifact, web_artifacts.samples, RuntimeSettings(backend="webgl"))


def test_doctor_lists_the_web_packages():
    from edgeport.cli.setup import doctor_rows

    rows = {(row["kind"], row["name"]): row for row in doctor_rows(["litertjs-browser", "ort-web"])}
    for name, engine, package in (
        ("litertjs-browser", "LiteRT.js", npm.LITERTJS),
        ("ort-web", "onnxruntime-web", npm.ORT_WEB),
    ):
        row = rows[("runtime", name)]
        assert row["wanted"] and row["available"], row
        assert f"{engine} {npm.pinned_version(package)} on Chromium" in str(row["version"])
    names = {r.name for cls, _ in RUNTIMES.values() for r in cls().requirements()}
    assert f"@litertjs/core {npm.pinned_version('@litertjs/core')}" in names
    assert f"onnxruntime-web {npm.pinned_version('onnxruntime-web')}" in names


def test_the_report_puts_the_browser_runtimes_side_by_side():
    from edgeport.checks.latency import summarize
    from edgeport.report.files import Report, StageResult, TargetResult, summary_markdown
    from edgeport.report.html import render

    def target(name, runtime, backend, check, latency=None):
        stages = (StageResult("convert", "passed"), check)
        return TargetResult(name, name.split("@")[0], "", runtime, stages, backend=backend, latency=latency)

    fetched = {"model": 1_250_000, "runtime": 9_600_000}
    raw = RawTimings(2430.0, 12.5, 3, (2.0, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7), 1, "v", downloaded_bytes=fetched)
    timed = summarize(raw)

    unavailable = "runtime ort-web: backend webgpu unavailable here: navigator.gpu.requestAdapter() found no adapter"
    report = Report(
        model={"path": "m"},
        samples={"source": "synthetic"},
        calibration=None,
        targets=(
            target("tflite@litertjs-browser", "litertjs-browser", "webgpu", StageResult("check", "passed"), timed),
            target("onnx@ort-web", "ort-web", "webgpu", StageResult("check", "failed", 1.0, unavailable)),
            target("onnx", "onnxruntime", None, StageResult("check", "passed")),
        ),
        exit_code=1,
        created="now",
        machine={},
        edgeport_version="0",
    )
    summary = summary_markdown(report)
    assert "**Browser runtimes** (headless Chromium)" in summary
    assert (
        "| runtime | backend | accuracy | p50 (95 % interval) | first inference | load | downloads | ran |" in summary
    )
    assert (
        "| litertjs-browser | webgpu | – | 2.350 ms [2.000, 2.700] | 12.500 ms | 2.4 s | 10.3 MB (model 1.2 MB) | "
        "ran, passed |"
    ) in summary
    assert f"| ort-web | webgpu | – | – | – | – | – | unavailable: {unavailable} |" in summary
    assert "| onnxruntime |" not in summary.split("**Browser runtimes**")[1]
    assert '<h2 id="browser">Browser runtimes</h2>' in render(report)


def test_the_downloads_cell_on_both_sides_of_its_edges():
    import dataclasses

    from edgeport.checks.latency import summarize
    from edgeport.report.files import downloads_cell

    timed = summarize(RawTimings(1.0, 1.0, 1, (1.0,) * 6, 1, "v"))
    assert downloads_cell(None) == "–" and downloads_cell(timed) == "–"  # not a page: not known
    assert downloads_cell(dataclasses.replace(timed, downloaded_bytes={})) == "–"
    assert downloads_cell(dataclasses.replace(timed, downloaded_bytes={"model": 0, "runtime": 0})) == "0 B (model 0 B)"
    small = dataclasses.replace(timed, downloaded_bytes={"model": 1023, "runtime": 1})
    assert downloads_cell(small) == "1.0 KB (model 1023 B)"
    huge = dataclasses.replace(timed, downloaded_bytes={"model": 3 * 2**30, "runtime": 12 * 2**20})
    assert downloads_cell(huge) == "3.01 GB (model 3.00 GB)"


def test_int8_inputs_are_unavailable_on_litertjs_with_the_fix_and_float_io_int8_runs(tmp_path):
    """LiteRT.js takes float32, int32 and uint8 tensors only: an int8-in, int8-out model is said unavailable
    before the browser starts (never a failed check, as if the artifact were wrong); the same int8 model with
    float inputs and outputs runs there and agrees."""
    import json

    from edgeport_testing import assert_one_line_error, run_cli, save_tiny

    model = save_tiny(tmp_path / "tiny")
    out = tmp_path / "out"
    result = run_cli(
        "convert", model, "-t", "tflite:int8@litertjs-browser", "--io-type", "int8", "-o", out, "--no-bench"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    check = next(s for s in report["targets"][0]["stages"] if s["stage"] == "check")
    assert check["status"] == "skipped" and report["verdicts"] == {"tflite:int8@litertjs-browser": "unchecked"}
    assert "LiteRT.js" in check["reason"] and "x is int8, y is int8" in check["reason"]
    assert "--io-type float" in check["reason"] and "litert" in check["reason"]
    runtime = LiteRTJSRuntime()
    assert (
        runtime.cannot_run(out / "tflite-int8--litertjs-browser" / "model.tflite")
        == check["reason"].split("cannot run it: ")[1]
    )
    standalone = run_cli(
        "check",
        out / "tflite-int8--litertjs-browser" / "model.tflite",
        "--model",
        model,
        "--runtime",
        "litertjs-browser",
    )
    assert_one_line_error(standalone, 1, "runtime litertjs-browser cannot run", "x is int8", "--io-type float")
    strict = run_cli(
        "convert",
        model,
        "-t",
        "tflite:int8@litertjs-browser",
        "--io-type",
        "int8",
        "-o",
        tmp_path / "strict",
        "--no-bench",
        "--strict",
    )
    strict_report = json.loads((tmp_path / "strict" / "report.json").read_text())
    assert strict.returncode == 1 and strict_report["verdicts"] == {"tflite:int8@litertjs-browser": "failed"}
    assert "cannot run it" in strict_report["targets"][0]["stages"][1]["reason"]
    floats = run_cli("convert", model, "-t", "tflite:int8@litertjs-browser", "-o", tmp_path / "float-io", "--no-bench")
    assert floats.returncode == 0, floats.stderr
    float_report = json.loads((tmp_path / "float-io" / "report.json").read_text())
    assert float_report["verdicts"] == {"tflite:int8@litertjs-browser": "passed"}
    assert runtime.cannot_run(tmp_path / "float-io" / "tflite-int8--litertjs-browser" / "model.tflite") is None


def test_onnx_runtimes_own_warnings_are_said_not_failures(tmp_path):
    """ONNX Runtime Web writes its warnings (nodes left on the CPU by the WebGPU provider) to console.error,
    after a colour code and a time stamp: the page keeps them as notices (edgeport/browser/wire.js with
    ort-web's pattern, run in Node here); any other console error still fails the run. The benchmark says them."""
    import json
    import re
    import subprocess
    from pathlib import Path

    from edgeport.targets.tfjs.node import node_executable

    root = Path(__file__).resolve().parents[2]
    pattern = re.search(r"keepLogLines\(console, notices, (/.*?/)\)", (root / "targets/ortweb/page.js").read_text())
    assert pattern, "ort-web's page keeps no log lines"
    script = (
        (root / "edgeport/browser/wire.js").read_text()
        + f"""
const failed = [], notices = [];
const fake = {{error: (...args) => failed.push(args.join(' '))}};
edgeportWire.keepLogLines(fake, notices, {pattern.group(1)});
fake.error('\\x1b[0;93m2026-12-08 00:58:10.953958 [W:onnxruntime:, session_state.cc:1598 '
  + 'VerifyEachNodeIsAssignedToAnEp] Some nodes were not assigned to the preferred execution providers\\x1b[m');
fake.error('Uncaught TypeError: x is undefined');
console.log(JSON.stringify({{failed, notices}}));
"""
    )
    node = node_executable()
    assert node, "node is not installed: make test installs it"
    done = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60, check=True)
    seen = json.loads(done.stdout)
    assert seen["failed"] == ["Uncaught TypeError: x is undefined"]
    assert seen["notices"] == [
        "2026-12-08 00:58:10.953958 [W:onnxruntime:, session_state.cc:1598 VerifyEachNodeIsAssignedToAnEp] "
        "Some nodes were not assigned to the preferred execution providers"
    ]
    runtime = ORTWebRuntime()
    said = runtime.notices_said({"notices": [*seen["notices"], "a", "b", "c", " "]})
    assert said[0].startswith("onnxruntime-web said: 2026-12-08") and said[1:] == (
        "onnxruntime-web said: a",
        "onnxruntime-web said: b",
        "onnxruntime-web said 1 more",
    )
    assert runtime.notices_said({}) == ()
