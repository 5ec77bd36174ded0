"""Headless Chromium for every browser runtime: Debian's `chromium` started by Playwright (no browser download),
a fresh profile per run, the page's `edgeportRun(request)` called once under a watchdog.

`run_page` opens the page a runtime's server (edgeport.browser.server) serves, calls `edgeportRun` and hands
back its answer with the page's peak RSS; console errors, page errors and a crash fail the run. Playwright's
Node.js driver and Chromium die with this process (`dies_with_parent_program`), so a killed worker takes the
browser along. `page.evaluate` is bounded: a page that does not answer in time has its renderers killed.

WebGPU: `--enable-unsafe-webgpu` is what headless Chromium needs on Linux to expose navigator.gpu's adapter; on
a machine without a GPU that adapter is SwiftShader's (a CPU implementation of Vulkan), checked here with
Debian's Chromium 156 (`--use-webgpu-adapter=swiftshader` or `--enable-features=Vulkan` add nothing). WebGL
runs on ANGLE over SwiftShader. The browser is `chromium` on PATH, or EDGEPORT_CHROMIUM.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

from edgeport.errors import RuntimeFailure
from edgeport.run.isolation import descendants, dies_with_parent_program
from edgeport.run.requirements import find_program

CHROMIUM_ENV = "EDGEPORT_CHROMIUM"
NODE_PATH_ENV = "PLAYWRIGHT_NODEJS_PATH"  # the Node.js that runs Playwright's driver
CHROMIUM_ARGS = (
    "--no-sandbox",  # edgeport may run as root (CI containers)
    "--use-angle=swiftshader",  # WebGL without a GPU: ANGLE on SwiftShader
    "--enable-unsafe-swiftshader",
    "--enable-unsafe-webgpu",  # navigator.gpu's adapter in headless Linux Chromium (SwiftShader without a GPU)
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


@cache
def chromium_version() -> str:
    """e.g. "Chromium 156.0.8078.129" ("Chromium ?" when it does not answer)."""
    chromium = chromium_executable()
    if chromium is None:
        return "Chromium ?"
    try:
        done = subprocess.run([chromium, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError):
        return "Chromium ?"
    lines = done.stdout.strip().splitlines()
    text = lines[0].strip() if done.returncode == 0 and lines else ""
    return text.split(" built on")[0] or "Chromium ?"


def browser_requirements() -> tuple:
    """Playwright and Debian's Chromium: what every browser runtime needs besides its own npm packages."""
    from edgeport.run.requirements import python_package, system_program

    return (
        python_package("playwright", extra="browser", why="drives Chromium"),
        system_program(
            "chromium",
            apt_packages=("chromium",),
            env_var=CHROMIUM_ENV,
            aliases=("chromium-browser",),
            why="the browser (Debian's, never a download)",
        ),
    )


def chromium_problem(runtime: str) -> str | None:
    """Why `runtime` cannot run here (Playwright or Chromium missing), with the fix; None when both are there."""
    import importlib.util

    if importlib.util.find_spec("playwright") is None:
        return (
            f"the Python package playwright is missing; install it: edgeport setup --target {runtime} "
            "(or pip install playwright; Chromium comes from apt: apt-get install -y chromium)"
        )
    if chromium_executable() is None:
        override = os.environ.get(CHROMIUM_ENV)
        why = (
            f"{CHROMIUM_ENV}={override} is not an executable file"
            if override
            else f"chromium is not on PATH (or set {CHROMIUM_ENV})"
        )
        return f"Chromium not found: {why}; install it: apt-get install -y chromium"
    return None


def run_page(
    where: str, base_url: str, request: dict[str, Any], *, limit_s: float, screenshot: str | None = None
) -> tuple[dict[str, Any], int]:
    """Open `base_url`/ in a fresh Chromium, answer `edgeportRun(request)` within `limit_s`: (result, peak RSS)."""
    with browser_page(where) as (page, problems):
        watchdog = Watchdog(limit_s)
        result = None
        try:
            page.goto(f"{base_url}/", wait_until="load")
            with watchdog:
                result = page.evaluate("request => edgeportRun(request)", request)
        except Exception as exc:  # noqa: BLE001 - Playwright raises its own Error and TimeoutError
            problems.insert(0, playwright_message(exc))
        finally:
            if screenshot and not watchdog.fired:
                save_screenshot(page, Path(screenshot))
        peak = renderer_peak_rss_bytes()
        if watchdog.fired:
            raise RuntimeFailure(
                f"{where}: the page did not answer within {limit_s:g} s; its renderer was killed (the model is "
                "too slow here or the page hangs)"
            )
        problems.sort(key=lambda problem: problem != PAGE_CRASHED)  # a crash explains everything after it
        if problems:
            raise RuntimeFailure(f"{where}: {problems[0]}")
        assert result is not None
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


class Watchdog:
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

    def __enter__(self) -> Watchdog:
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
    with (
        tempfile.TemporaryDirectory(prefix="edgeport-chromium-") as profile,
        tempfile.TemporaryDirectory(prefix="edgeport-launch-") as launchers,
        _driver_dying_with_this_process(launchers),
        sync_playwright() as playwright,
    ):
        try:
            context = playwright.chromium.launch_persistent_context(
                profile,
                executable_path=dies_with_parent_program(chromium_executable() or "chromium", Path(launchers)),
                headless=True,
                args=list(CHROMIUM_ARGS),
                timeout=PAGE_LOAD_TIMEOUT_MS,
            )
        except Error as exc:
            raise RuntimeFailure(f"{where}: Chromium did not start: {playwright_message(exc)}") from None
        try:
            context.set_default_timeout(PAGE_LOAD_TIMEOUT_MS)
            page = context.pages[0] if context.pages else context.new_page()
            page.on(
                "console", lambda message: problems.append(console_error(message)) if message.type == "error" else None
            )
            page.on("pageerror", lambda error: problems.append(f"page error: {one_line(str(error))}"))
            page.on("crash", lambda _page: problems.append(PAGE_CRASHED))
            yield page, problems
        finally:
            context.close()


@contextmanager
def _driver_dying_with_this_process(folder: str) -> Iterator[None]:
    """Playwright's Node.js driver started so that it is killed with this process, and Chromium (started by the
    driver through `dies_with_parent_program`) with the driver: a worker killed with edgeport (SIGKILL, no
    clean-up) takes the browser along at once instead of leaving the driver to close it at its own pace. The
    driver is the package's bundled node, or PLAYWRIGHT_NODEJS_PATH (which Playwright reads as it starts)."""
    import playwright

    bundled = Path(playwright.__file__).parent / "driver" / "node"
    node = os.environ.get(NODE_PATH_ENV) or (str(bundled) if bundled.is_file() else None)
    if node is None:  # a layout this does not know: Playwright's own driver, closing Chromium when we are gone
        yield
        return
    saved = os.environ.get(NODE_PATH_ENV)
    os.environ[NODE_PATH_ENV] = dies_with_parent_program(node, Path(folder))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(NODE_PATH_ENV, None)
        else:
            os.environ[NODE_PATH_ENV] = saved


def console_error(message) -> str:
    url = (message.location or {}).get("url", "")
    where = f" ({url})" if url and not url.endswith("/page.js") else ""
    return f"console error: {one_line(message.text)}{where}"


def save_screenshot(page, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
    except Exception:  # noqa: BLE001 - a screenshot is a courtesy; a crashed page cannot take one
        pass


def one_line(text: str) -> str:
    return " ".join(str(text).split())[:500]


def playwright_message(exc: Exception) -> str:
    """Playwright's first line without its call-site prefixes ("page.evaluate: Error: ...")."""
    text = str(getattr(exc, "message", "") or exc).strip().splitlines()
    line = re.sub(r"^\w+\.\w+: ", "", text[0] if text else type(exc).__name__)
    return one_line(line.removeprefix("Error: "))


def renderer_peak_rss_bytes() -> int:
    """Peak RSS (VmHWM) of the page: the largest Chromium renderer under this process plus the GPU process.

    Linux only (0 elsewhere). The GPU process holds WebGL textures; the other renderers (about:blank, the
    browser UI) and the browser process itself are not the model's cost.
    """
    from edgeport.checks.timing import vm_hwm_bytes

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
