"""TF.js in headless Chromium: the page fetches model.json + shards over HTTP, as a web app would.

edgeport serves the page, the TF.js bundles from the installed packages (`edgeport setup`) and the artifact
folder on 127.0.0.1 (targets/tfjs/server.py), starts Debian's Chromium through Playwright (no browser download) with a
fresh profile, and calls the page's `edgeportRun` with the samples as base64 of raw bytes. The page runs
the samples or edgeport's timing protocol itself (performance.now(); every run downloads its outputs, so
WebGL timings are honest) and hands back raw times. Console errors and page errors fail the run.

Settings: `backend` wasm (default), webgl (SwiftShader in headless Chromium here) or cpu; `threads` sets the
wasm thread count: above 1 the threaded wasm build loads (TF.js caps it at half the logical cores); at 1 the
plain SIMD build, as most sites get. A benchmark's page (and a threaded one's) is served cross-origin isolated
(COOP/COEP), so performance.now() is not coarsened to 100 µs; a page that is not isolated all the same gets a
note in the report that its timing resolution is coarse. `page.evaluate` is bounded: a page that does not
answer within EVALUATE_TIMEOUT_S (plus twice the protocol's max_seconds) has its renderers killed and the run
fails saying so.
`extra["screenshot"]`: a PNG path to save the page to after the run. The browser is `chromium` on PATH, or
EDGEPORT_CHROMIUM. Peak RSS is the page's renderer process plus the GPU process (Linux /proc, VmHWM).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import signal
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from edgeport.contracts import Availability, Feeds, RawTimings, Runtime, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure, RuntimeUnavailable
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.run.isolation import descendants
from edgeport.run.requirements import find_program
from edgeport.targets.tfjs import server as tfjs_server
from edgeport.targets.tfjs import shared
from edgeport.targets.tfjs import wire as tfjs_wire
from edgeport.targets.tfjs.shared import check_artifact, describe_engine, missing_program, pick_backend, raw_timings

BACKENDS = ("wasm", "webgl", "cpu")
CHROMIUM_ENV = "EDGEPORT_CHROMIUM"
CHROMIUM_ARGS = (
    "--no-sandbox",  # edgeport may run as root (CI containers)
    "--use-angle=swiftshader",  # WebGL without a GPU: ANGLE on SwiftShader
    "--enable-unsafe-swiftshader",
    "--ignore-gpu-blocklist",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)
PAGE_LOAD_TIMEOUT_MS = 60_000
EVALUATE_TIMEOUT_S = 600.0  # the page's answer to one infer/benchmark request (plus 2 x max_seconds to benchmark)
PAGE_CRASHED = "the page's renderer process crashed or was killed (out of memory?); run it again"
COARSE_TIMER_STEP_MS = 0.02  # Chromium's performance.now(): 5 µs steps when cross-origin isolated, else 100 µs


def chromium_executable() -> str | None:
    return find_program(CHROMIUM_ENV, "chromium", "chromium-browser")


class TFJSBrowserRuntime(Runtime):
    name = "tfjs-browser"
    artifact_suffixes = (".json",)
    backends = BACKENDS
    description = "TF.js in headless Chromium (wasm, webgl or cpu), model fetched over HTTP like a web app"

    def requirements(self):
        from edgeport.run.requirements import python_package, system_program, tfjs_packages

        return (
            python_package("playwright", extra="browser", why="drives Chromium"),
            system_program(
                "chromium",
                apt_packages=("chromium",),
                env_var=CHROMIUM_ENV,
                aliases=("chromium-browser",),
                why="the browser (Debian's, never a download)",
            ),
            tfjs_packages(why="the TF.js bundles and wasm binaries the page loads"),
        )

    def availability(self) -> Availability:
        if importlib.util.find_spec("playwright") is None:
            return Availability(
                False,
                "the Python package playwright is missing; install it: edgeport setup "
                "--target tfjs-browser (or pip install playwright; Chromium comes from apt: "
                "apt-get install -y chromium)",
            )
        if chromium_executable() is None:
            return Availability(
                False,
                f"Chromium not found: {missing_program(CHROMIUM_ENV, 'chromium')}; "
                "install it: apt-get install -y chromium",
            )
        problem = tfjs_project.packages_problem()
        return Availability(problem is None, problem or "")

    def version(self) -> str:
        return f"tfjs {tfjs_project.installed_version()} on {self._chromium_version()}"

    def infer(self, artifact: Path, samples: SampleSet, settings: RuntimeSettings) -> list[Feeds]:
        artifact = check_artifact(artifact)
        result, _peak = self._run(artifact, settings, {"mode": "infer"}, samples.feeds())
        return tfjs_wire.restore_dtypes(tfjs_wire.decode_base64(result["outputs"]), artifact)

    def intermediates(self, artifact, samples, settings, names, aliases):
        """The samples executed to the layers' graph nodes (targets/tfjs/layers.py) on the page, on the same
        backend and within the same time limit as `infer`."""
        from edgeport.targets.tfjs.layers import plan_layers

        artifact = check_artifact(artifact)
        plan = plan_layers(artifact, names, aliases)
        request = {"mode": "intermediates", "layers": plan.request()}
        result, _peak = self._run(artifact, settings, request, samples.feeds())
        return plan.layer_run(tfjs_wire.decode_base64(result["outputs"]), result.get("layers") or {})

    def benchmark(
        self, artifact: Path, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
    ) -> RawTimings:
        artifact = check_artifact(artifact)
        request = {"mode": "benchmark", "protocol": dataclasses.asdict(protocol)}
        result, peak = self._run(artifact, settings, request, samples.feeds())
        version = describe_engine(result, settings.threads, self._chromium_version())
        if result.get("renderer"):
            version += f", WebGL {result.get('webgl_version', '?')} on {result['renderer']}"
        return raw_timings(result, peak_rss_bytes=peak, version=version, notes=timer_notes(result))

    def _chromium_version(self) -> str:
        chromium = chromium_executable()
        text = shared.program_version(chromium) if chromium else ""
        return text.split(" built on")[0] or "Chromium ?"

    def _run(
        self, artifact: Path, settings: RuntimeSettings, request: dict[str, Any], feeds: list[Feeds]
    ) -> tuple[dict[str, Any], int]:
        backend = pick_backend(settings, BACKENDS, self.name, artifact)
        availability = self.availability()
        if not availability.available:
            raise RuntimeUnavailable(f"runtime {self.name} unavailable: {availability.reason}")
        where = f"tfjs-browser ({backend}) on {artifact}"
        screenshot = settings.extra.get("screenshot")
        isolated = request["mode"] == "benchmark" or (backend == "wasm" and settings.threads > 1)
        limit = evaluate_timeout_s(request)
        with tfjs_server.serve(artifact, isolated=isolated) as site, browser_page(where) as (page, problems):
            watchdog = _Watchdog(limit)
            try:
                page.goto(f"{site.base_url}/", wait_until="load")
                request = request | {
                    "model_url": site.model_url,
                    "backend": backend,
                    "threads": int(settings.threads),
                    "samples": tfjs_wire.encode_base64(feeds),
                }
                with watchdog:
                    result = page.evaluate("request => edgeportRun(request)", request)
            except Exception as exc:  # noqa: BLE001 - Playwright raises its own Error and TimeoutError
                problems.insert(0, _playwright_message(exc))
                result = None
            finally:
                if screenshot and not watchdog.fired:
                    _save_screenshot(page, Path(screenshot))
            peak = renderer_peak_rss_bytes()
            if watchdog.fired:
                raise RuntimeFailure(
                    f"{where}: the page did not answer within {limit:g} s; its renderer was killed (the model is "
                    "too slow here or the page hangs)"
                )
            problems.sort(key=lambda problem: problem != PAGE_CRASHED)  # a crash explains everything after it
            if problems:
                raise RuntimeFailure(f"{where}: {problems[0]}")
            return result, peak


def evaluate_timeout_s(request: dict[str, Any]) -> float:
    """How long the page may take to answer one request: EVALUATE_TIMEOUT_S, plus twice max_seconds to time."""
    protocol = request.get("protocol") or {}
    return EVALUATE_TIMEOUT_S + 2 * float(protocol.get("max_seconds", 0))


def timer_notes(result: dict[str, Any]) -> tuple[str, ...]:
    """A note when the page's clock was coarse: not cross-origin isolated, or steps above COARSE_TIMER_STEP_MS."""
    step = result.get("timer_step_ms")
    if result.get("isolated") and (step is None or step <= COARSE_TIMER_STEP_MS):
        return ()
    why = "the page was not cross-origin isolated" if not result.get("isolated") else "the browser coarsens it"
    said = f"{step:.3f} ms" if isinstance(step, (int, float)) else "an unknown step"
    return (f"timing resolution is coarse: performance.now() ticks by {said} ({why}); sub-ms times are not precise",)


class _Watchdog:
    """Kills this process's Chromium renderers if the block runs longer than `seconds`: Playwright's sync
    `page.evaluate` takes no timeout, and a renderer that is killed makes it return (with an error)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.fired = False
        self._timer: threading.Timer | None = None

    def _fire(self) -> None:
        self.fired = True
        for pid in descendants(os.getpid()):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"--type=renderer" in cmdline:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                continue

    def __enter__(self) -> _Watchdog:
        self._timer = threading.Timer(self.seconds, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._timer is not None:
            self._timer.cancel()


@contextmanager
def browser_page(where: str) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh headless Chromium profile; `problems` collects console errors, page errors, crashes."""
    from playwright.sync_api import Error, sync_playwright

    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgeport-chromium-") as profile, sync_playwright() as playwright:
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=chromium_executable(),
                headless=True,
                args=list(CHROMIUM_ARGS),
                timeout=PAGE_LOAD_TIMEOUT_MS,
            )
        except Error as exc:
            raise RuntimeFailure(f"{where}: Chromium did not start: {_playwright_message(exc)}") from None
        try:
            context.set_default_timeout(PAGE_LOAD_TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            page.on(
                "console", lambda message: problems.append(_console_error(message)) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {_one_line(str(error))}"))
            page.on("crash", lambda _page: problems.append(PAGE_CRASHED))
            yield page, problems
        finally:
            context.close()


def _console_error(message) -> str:
    url = (message.location or {}).get("url", "")
    where = f" ({url})" if url and not url.endswith("/page.js") else ""
    return f"console error: {_one_line(message.text)}{where}"


def _save_screenshot(page, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    except Exception:  # noqa: BLE001 - a screenshot is a courtesy; a crashed page cannot take one
        pass


def _one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def _playwright_message(exc: Exception) -> str:
    """Playwright's first line without its call-site prefixes ("page.evaluate: Error: ...")."""
    text = str(getattr(exc, "message", "") or exc).strip().splitlines()
    line = re.sub(r"^\w+\.\w+: ", "", text[0] if text else type(exc).__name__)
    return _one_line(line.removeprefix("Error: "))


def renderer_peak_rss_bytes() -> int:
    """Peak RSS (VmHWM) of the page: the largest Chromium renderer under this process plus the GPU process.

    Linux only (0 elsewhere). The GPU process holds WebGL textures; the other renderers (about:blank, the
    browser UI) and the browser process itself are not the model's cost.
    """
    from edgeport.checks.latency import vm_hwm_bytes  # numpy comes with it

    renderers, gpu = [0], 0
    for pid in descendants(os.getpid()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "--type=renderer" not in cmdline and "--type=gpu-process" not in cmdline:
                continue
        except OSError:
            continue
        peak = vm_hwm_bytes(pid) or 0
        if "--type=gpu-process" in cmdline:
            gpu += peak
        else:
            renderers.append(peak)
    return max(renderers) + gpu
