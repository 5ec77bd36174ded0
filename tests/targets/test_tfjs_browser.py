"""tfjs-browser on real headless Chromium (Debian's, via Playwright): wasm, webgl (SwiftShader) and cpu."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edgeport.browser import server as page_server
from edgeport.checks.accuracy import compare, default_tolerance
from edgeport.contracts import RawTimings, RuntimeSettings, TimingProtocol
from edgeport.errors import RuntimeFailure, RuntimeUnavailable, UsageError
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.targets.tfjs import server as tfjs_server
from edgeport.targets.tfjs.browser import TFJSBrowserRuntime, browser_page, descendants

QUICK = TimingProtocol(warmup_runs=2, warmup_seconds=0.0, min_runs=10, min_seconds=0.05, max_seconds=10.0)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def runtime() -> TFJSBrowserRuntime:
    runtime = TFJSBrowserRuntime()
    if not runtime.availability().available:
        pytest.fail(f"tfjs-browser must run here: {runtime.availability().reason}")
    return runtime


def settings(backend: str, screenshot: Path | None = None, threads: int = 1) -> RuntimeSettings:
    extra = {"screenshot": str(screenshot)} if screenshot else {}
    return RuntimeSettings(backend=backend, threads=threads, extra=extra)


def assert_screenshot(path: Path) -> None:
    assert path.is_file() and path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 1000


# ------------------------------------------------------------------------------------------------ results
@pytest.mark.parametrize("backend", ["wasm", "webgl", "cpu"])
def test_handmade_graph_model_matches_numpy(runtime, handmade, handmade_samples, backend, tmp_path):
    shot = tmp_path / f"handmade-{backend}.png"
    outputs = runtime.infer(handmade.model_json, handmade_samples, settings(backend, shot))
    assert len(outputs) == handmade_samples.count
    for index, result in enumerate(outputs):
        expected = handmade.expected(handmade_samples.feed(index)["features"])
        assert set(result) == set(expected)
        for name, value in expected.items():
            assert result[name].dtype == np.float32 and result[name].shape == value.shape
            np.testing.assert_allclose(result[name], value, rtol=1e-4, atol=1e-5)
    assert_screenshot(shot)


@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_converted_keras_model_matches_savedmodel(runtime, converted_keras, backend, tmp_path):
    shot = tmp_path / f"keras-{backend}.png"
    outputs = runtime.infer(converted_keras.model_json, converted_keras.samples, settings(backend, shot))
    result = compare(converted_keras.reference, outputs, default_tolerance("fp32"))
    assert result.passed, result.failures
    assert min(m.cosine for m in result.outputs) >= 0.9999
    assert_screenshot(shot)


# ------------------------------------------------------------------------------------------------ timing
@pytest.mark.parametrize("backend", ["wasm", "webgl"])
def test_benchmark_returns_raw_timings_from_the_page(runtime, handmade, handmade_samples, backend, tmp_path):
    shot = tmp_path / f"bench-{backend}.png"
    raw = runtime.benchmark(handmade.model_json, handmade_samples, settings(backend, shot, threads=2), QUICK)
    assert isinstance(raw, RawTimings)
    assert len(raw.run_ms) >= QUICK.min_runs
    assert raw.warmup_runs >= QUICK.warmup_runs and raw.load_ms > 0 and raw.first_inference_ms > 0
    assert 20 * 2**20 < raw.peak_rss_bytes < 8 * 2**30  # the page's renderer plus the GPU process
    assert (
        f"tfjs {tfjs_project.installed_version()} {backend}" in raw.runtime_version
        and "Chromium" in raw.runtime_version
    )
    if backend == "webgl":
        assert "SwiftShader" in raw.runtime_version
    else:
        assert "threaded build" in raw.runtime_version  # threads > 1: the page is served cross-origin isolated
        assert "2 requested" in raw.runtime_version or "2 threads" in raw.runtime_version
    assert_screenshot(shot)


def test_a_benchmark_page_is_cross_origin_isolated_so_its_timer_is_fine(runtime, handmade, handmade_samples):
    raw = runtime.benchmark(handmade.model_json, handmade_samples, settings("wasm"), QUICK)
    assert raw.notes == ()  # crossOriginIsolated, performance.now() in 5 µs steps, not 100 µs
    assert "threaded build" not in raw.runtime_version  # one thread: the plain SIMD build, isolated or not
    assert min(raw.run_ms) > 0


def test_a_page_that_is_not_isolated_says_its_timer_is_coarse(runtime, handmade, handmade_samples, monkeypatch):
    monkeypatch.setattr(page_server, "ISOLATION_HEADERS", {})  # as if COOP/COEP were lost on the way
    raw = runtime.benchmark(handmade.model_json, handmade_samples, settings("cpu"), QUICK)
    assert len(raw.notes) == 1 and raw.notes[0].startswith("timing resolution is coarse: performance.now() ticks by")
    assert "the page was not cross-origin isolated" in raw.notes[0]


def test_the_server_sends_cross_origin_isolation_headers_when_asked(handmade):
    from urllib.request import urlopen

    for isolated in (True, False):
        with tfjs_server.serve(handmade.model_json, isolated=isolated) as site, urlopen(f"{site.base_url}/") as page:
            headers = page.headers
            assert (headers.get("Cross-Origin-Opener-Policy") == "same-origin") is isolated
            assert (headers.get("Cross-Origin-Embedder-Policy") == "require-corp") is isolated


def test_a_page_that_does_not_answer_in_time_is_stopped(runtime, handmade, handmade_samples, monkeypatch):
    from edgeport.targets.tfjs import browser as browser_module

    monkeypatch.setattr(browser_module, "evaluate_timeout_s", lambda request: 3.0)
    endless = TimingProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=10, min_seconds=300, max_seconds=300)
    started = time.monotonic()
    with pytest.raises(RuntimeFailure, match=r"the page did not answer within 3 s; its renderer was killed"):
        runtime.benchmark(handmade.model_json, handmade_samples, settings("wasm"), endless)
    assert time.monotonic() - started < 60


# ------------------------------------------------------------------------------------------------ errors
def test_chromium_missing_is_unavailable_with_the_install_command(monkeypatch, handmade, handmade_samples):
    monkeypatch.setenv("EDGEPORT_CHROMIUM", "/nonexistent/chromium")
    runtime = TFJSBrowserRuntime()
    availability = runtime.availability()
    assert not availability.available and "apt-get install -y chromium" in availability.reason
    with pytest.raises(RuntimeUnavailable, match="apt-get install -y chromium"):
        runtime.infer(handmade.model_json, handmade_samples, RuntimeSettings())


def test_playwright_missing_is_unavailable_with_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "playwright", None)
    availability = TFJSBrowserRuntime().availability()
    assert not availability.available and "pip install playwright" in availability.reason


def test_node_modules_missing_is_unavailable_with_the_setup_command(monkeypatch, tmp_path):
    monkeypatch.setenv(tfjs_project.NODE_MODULES_ENV, str(tmp_path / "node_modules"))
    availability = TFJSBrowserRuntime().availability()
    assert not availability.available and "edgeport setup --target tfjs" in availability.reason


def test_console_and_page_errors_are_collected(runtime, handmade):
    with tfjs_server.serve(handmade.model_json) as site, browser_page("test") as (page, problems):
        page.goto(f"{site.base_url}/")
        page.evaluate("() => { console.error('boom', 42); setTimeout(() => { throw new Error('kaboom'); }); }")
        page.wait_for_timeout(200)
    assert "console error: boom 42" in problems
    assert any(problem.startswith("page error: ") and "kaboom" in problem for problem in problems)


def test_renderer_killed_mid_run_is_a_runtime_failure(runtime, handmade, handmade_samples):
    finished = threading.Event()

    def kill_page_renderers_until_finished():
        finished.wait(5)
        while not finished.wait(0.5):
            for pid in descendants(os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                    if b"--type=renderer" in cmdline and b"--top-chrome-webui" not in cmdline:
                        os.kill(pid, signal.SIGKILL)
                except OSError:
                    continue

    killer = threading.Thread(target=kill_page_renderers_until_finished, daemon=True)
    killer.start()
    long_run = TimingProtocol(warmup_runs=1, warmup_seconds=0.0, min_runs=10, min_seconds=120, max_seconds=120)
    try:
        with pytest.raises(RuntimeFailure, match="renderer process crashed or was killed") as caught:
            runtime.benchmark(handmade.model_json, handmade_samples, settings("wasm"), long_run)
    finally:
        finished.set()
        killer.join()
    assert caught.value.message.startswith("tfjs-browser (wasm) on ") and "\n" not in caught.value.message


def test_missing_weight_shard_fails_the_page_in_one_line(runtime, handmade, handmade_samples, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(handmade.model_json.parent, broken)
    (broken / "group1-shard1of2.bin").unlink()
    shot = tmp_path / "broken.png"
    with pytest.raises(RuntimeFailure) as caught:
        runtime.infer(broken / "model.json", handmade_samples, settings("wasm", shot))
    message = caught.value.message
    assert message.startswith(f"tfjs-browser (wasm) on {broken / 'model.json'}: ") and "\n" not in message
    assert "group1-shard1of2.bin" in message or "404" in message
    assert_screenshot(shot)


def test_wrong_input_names_fail_with_the_signature(runtime, handmade):
    from edgeport.contracts import SampleSet

    wrong = SampleSet(arrays={"pixels": np.zeros((1, 1, 6), np.float32)}, source="test", synthetic=True)
    with pytest.raises(RuntimeFailure, match=r"signature inputs are \[features\] but the samples hold \[pixels\]"):
        runtime.infer(handmade.model_json, wrong, settings("cpu"))


def test_unknown_backend_is_a_usage_error(runtime, handmade, handmade_samples):
    with pytest.raises(UsageError, match="has no backend 'webgpu'; use one of wasm, webgl, cpu"):
        runtime.infer(handmade.model_json, handmade_samples, RuntimeSettings(backend="webgpu"))


def test_server_serves_only_its_routes(handmade):
    model_dir = handmade.model_json.parent
    assert tfjs_server.resolve("/", model_dir).name == "page.html"
    assert tfjs_server.resolve("/model/model.json", model_dir) == handmade.model_json.resolve()
    assert tfjs_server.resolve("/npm/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm", model_dir).is_file()
    for path in ("/model/../../etc/passwd", "/npm/tfjs/package.json", "/edgeport/runner.js", "/etc/passwd"):
        assert tfjs_server.resolve(path, model_dir) is None


def test_is_registered_under_its_entry_point():
    from edgeport.run.registry import registry

    assert isinstance(registry().runtime("tfjs-browser"), TFJSBrowserRuntime)
