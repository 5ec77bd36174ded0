"""The Runtime every non-TF.js browser runtime is: one page, one npm package, wasm or webgpu, same protocol.

A subclass names its npm package (edgeport.browser.npm), its page folder (page.html + page.js) and which
paths of node_modules the page may load. Each run serves the page cross-origin isolated (threaded wasm, a
5 µs timer) on a fresh port, calls `edgeportRun` in a fresh Chromium (edgeport.browser.chromium) and reads
back outputs or raw times. `webgpu` needs an adapter: the page asks navigator.gpu for one first and, when
there is none, the run raises RuntimeUnavailable with the browser's reason; it never falls back to wasm.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any, ClassVar

from edgeport.browser import npm, wire
from edgeport.browser import server as page_server
from edgeport.browser.chromium import (
    browser_requirements,
    chromium_problem,
    chromium_version,
    evaluate_timeout_s,
    run_page,
    timer_notes,
)
from edgeport.contracts import Availability, Feeds, RawTimings, Runtime, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure, RuntimeUnavailable, UsageError

BACKENDS = ("wasm", "webgpu")
SOFTWARE_ADAPTERS = ("swiftshader",)  # WebGPU on the CPU: numerics are checked, its latency is not a GPU's
SOFTWARE_ADAPTER_NOTE = (
    "WebGPU ran on a software adapter ({adapter}), not a GPU: "  # keep: two lines
    "its numerics are WebGPU's, its latency is not a GPU latency"
)


class PageRuntime(Runtime):
    backends = BACKENDS
    engine: ClassVar[str]  # "LiteRT.js"
    npm_package: ClassVar[str]
    page_dir: ClassVar[Path]
    npm_paths: ClassVar[tuple[str, ...]]  # node_modules paths (prefixes) the page may load

    def requirements(self):
        why = f"the {self.engine} bundle and wasm binaries the page loads"
        return (*browser_requirements(), npm.requirement(self.npm_package, self.name, why=why))

    def availability(self) -> Availability:
        problem = chromium_problem(self.name) or npm.package_problem(self.npm_package, self.name)
        return Availability(problem is None, problem or "")

    def version(self) -> str:
        return f"{self.engine} {npm.installed_version(self.npm_package) or '?'} on {chromium_version()}"

    # hooks for the format: feeds as the artifact takes them, outputs as the check reads them
    def feeds_for(self, artifact: Path, feeds: list[Feeds]) -> list[Feeds]:
        return feeds

    def outputs_from(self, artifact: Path, outputs: list[Feeds]) -> list[Feeds]:
        return outputs

    def served(self, artifact: Path, folder: Path) -> tuple[Path, str | None]:
        """The file the page fetches (the artifact, or a copy made in `folder`) and a note saying why a copy."""
        return artifact, None

    def infer(self, artifact: Path, samples: SampleSet, settings: RuntimeSettings) -> list[Feeds]:
        result, _peak = self._run(Path(artifact), settings, {"mode": "infer"}, samples.feeds())
        return self.outputs_from(Path(artifact), wire.decode_outputs(result["outputs"]))

    def benchmark(
        self, artifact: Path, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
    ) -> RawTimings:
        request = {"mode": "benchmark", "protocol": dataclasses.asdict(protocol)}
        result, peak = self._run(Path(artifact), settings, request, samples.feeds())
        notes = timer_notes(result) + tuple(result.get("served_notes") or ()) + self.notices_said(result)
        adapter = str(result.get("adapter") or "")
        if result.get("backend") == "webgpu" and any(name in adapter.lower() for name in SOFTWARE_ADAPTERS):
            notes += (SOFTWARE_ADAPTER_NOTE.format(adapter=adapter),)
        timings = result["timings"]
        return RawTimings(
            load_ms=float(result["load_ms"]),
            first_inference_ms=float(timings["first_inference_ms"]),
            warmup_runs=int(timings["warmup_runs"]),
            run_ms=tuple(float(t) for t in timings["run_ms"]),
            peak_rss_bytes=int(peak),
            runtime_version=self._describe(result, settings.threads),
            notes=notes,
            downloaded_bytes=result.get("downloaded_bytes"),
        )

    def notices_said(self, result: dict[str, Any], limit: int = 3) -> tuple[str, ...]:
        """What the runtime itself logged on the page (ONNX Runtime's "some nodes were not assigned to the
        preferred execution providers": they ran on the CPU), said once each, the first `limit` of them."""
        kept = [str(text).strip() for text in result.get("notices") or () if str(text).strip()]
        said = tuple(f"{self.engine} said: {text.splitlines()[0][:300]}" for text in kept[:limit])
        return said + ((f"{self.engine} said {len(kept) - limit} more",) if len(kept) > limit else ())

    def backend(self, settings: RuntimeSettings) -> str:
        backend = (settings.backend or BACKENDS[0]).strip().lower()
        if backend not in self.backends:
            raise UsageError(
                f"runtime {self.name} has no backend {settings.backend!r}; use one of {', '.join(self.backends)}"
            )
        return backend

    def _describe(self, result: dict[str, Any], requested: int) -> str:
        """e.g. "LiteRT.js 2.5.3 wasm (threaded build, 2 threads) on Chromium 156" or "... webgpu on <adapter>"."""
        backend = result.get("backend", "?")
        text = f"{self.engine} {npm.installed_version(self.npm_package) or '?'} {backend}"
        if backend == "wasm":
            threads = int(result.get("threads", 1))
            build = "threaded build" if result.get("threaded") else "single-thread build"
            asked = "" if threads == requested else f"; {requested} requested"
            text += f" ({build}, {threads} thread{'s' if threads != 1 else ''}{asked})"
        elif result.get("adapter"):
            text += f" on adapter {result['adapter']}"
        return f"{text} on {chromium_version()}"

    def routes(self) -> page_server.Routes:
        paths = self.npm_paths
        return page_server.Routes(
            page_dir=self.page_dir,
            page_files=("page.html", "page.js"),
            npm_root=npm.node_modules(),
            npm_allowed=lambda inside: inside.startswith(paths),
        )

    def _run(
        self, artifact: Path, settings: RuntimeSettings, request: dict[str, Any], feeds: list[Feeds]
    ) -> tuple[dict[str, Any], int]:
        backend = self.backend(settings)
        artifact = artifact.resolve()
        if not artifact.is_file():
            raise RuntimeFailure(f"{self.name}: artifact {artifact} not found")
        availability = self.availability()
        if not availability.available:
            raise RuntimeUnavailable(f"runtime {self.name} unavailable: {availability.reason}")
        where = f"{self.name} ({backend}) on {artifact}"
        with tempfile.TemporaryDirectory(prefix="edgeport-served-") as folder:
            served, note = self.served(artifact, Path(folder))
            with page_server.serve(served, self.routes(), isolated=True) as site:
                request = request | {
                    "model_url": site.model_url,
                    "backend": backend,
                    "threads": int(settings.threads),
                    "samples": wire.encode_feeds(self.feeds_for(artifact, feeds)),
                }
                limit = evaluate_timeout_s(request)
                result, peak = run_page(
                    where, site.base_url, request, limit_s=limit, screenshot=settings.extra.get("screenshot")
                )
                result["downloaded_bytes"] = site.downloaded()
        if result.get("unavailable"):
            raise RuntimeUnavailable(
                f"runtime {self.name}: backend {backend} unavailable here: {result['unavailable']}"
            )
        result["served_notes"] = [note] if note else []
        return result, peak
