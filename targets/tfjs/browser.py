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
from pathlib import Path
from typing import Any

from edgeport.browser.chromium import (  # noqa: F401 - CHROMIUM_ARGS, browser_page: this runtime's API before the move
    CHROMIUM_ARGS,
    browser_page,
    browser_requirements,
    chromium_executable,
    chromium_problem,
    chromium_version,
    evaluate_timeout_s,
    run_page,
    timer_notes,
)
from edgeport.contracts import Availability, Feeds, RawTimings, Runtime, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeUnavailable
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.run.isolation import descendants  # noqa: F401 - the tests find the renderers with it
from edgeport.targets.tfjs import server as tfjs_server
from edgeport.targets.tfjs import wire as tfjs_wire
from edgeport.targets.tfjs.shared import check_artifact, describe_engine, pick_backend, raw_timings

BACKENDS = ("wasm", "webgl", "cpu")


class TFJSBrowserRuntime(Runtime):
    name = "tfjs-browser"
    artifact_suffixes = (".json",)
    backends = BACKENDS
    description = "TF.js in headless Chromium (wasm, webgl or cpu), model fetched over HTTP like a web app"

    def requirements(self):
        from edgeport.run.requirements import tfjs_packages

        return (*browser_requirements(), tfjs_packages(why="the TF.js bundles and wasm binaries the page loads"))

    def availability(self) -> Availability:
        problem = chromium_problem(self.name) or tfjs_project.packages_problem()
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
        return chromium_version()

    def _run(
        self, artifact: Path, settings: RuntimeSettings, request: dict[str, Any], feeds: list[Feeds]
    ) -> tuple[dict[str, Any], int]:
        backend = pick_backend(settings, BACKENDS, self.name, artifact)
        availability = self.availability()
        if not availability.available:
            raise RuntimeUnavailable(f"runtime {self.name} unavailable: {availability.reason}")
        where = f"tfjs-browser ({backend}) on {artifact}"
        isolated = request["mode"] == "benchmark" or (backend == "wasm" and settings.threads > 1)
        with tfjs_server.serve(artifact, isolated=isolated) as site:
            request = request | {
                "model_url": site.model_url,
                "backend": backend,
                "threads": int(settings.threads),
                "samples": tfjs_wire.encode_base64(feeds),
            }
            result, peak = run_page(
                where,
                site.base_url,
                request,
                limit_s=evaluate_timeout_s(request),
                screenshot=settings.extra.get("screenshot"),
            )
            result["downloaded_bytes"] = site.downloaded()
            return result, peak
