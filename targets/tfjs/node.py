"""TF.js in Node.js: runner.js loads model.json + weight shards from disk and runs them on wasm or cpu.

Node runs out of process, once per `infer`, `benchmark` and `intermediates`; tensors cross in a binary bundle file
(targets/tfjs/wire.py). The runner implements edgeport's timing protocol itself and hands back raw times,
so Node's start-up and the wasm compile are never timed. The wasm backend uses the binaries of the packages
`edgeport setup` installed (found through NODE_PATH); Node has no wasm threads, so `threads` above 1 is
recorded, not used.

Settings: `backend` wasm (default) or cpu. The Node executable is `node` on PATH, or EDGEPORT_NODE.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgeport.contracts import Availability, Feeds, RawTimings, Runtime, RuntimeSettings, SampleSet, TimingProtocol
from edgeport.errors import RuntimeFailure, RuntimeUnavailable
from edgeport.formats.tfjs import packages as tfjs_project
from edgeport.run.isolation import dies_with_parent
from edgeport.run.requirements import find_program
from edgeport.targets.tfjs import shared
from edgeport.targets.tfjs import wire as tfjs_wire
from edgeport.targets.tfjs.shared import check_artifact, describe_engine, missing_program, pick_backend, raw_timings

BACKENDS = ("wasm", "cpu")
NODE_ENV = "EDGEPORT_NODE"
INSTALL_NODE = "apt-get install nodejs npm"
RUNNER = shared.PROJECT_DIR / "runner.js"
ERROR_PREFIX = "edgeport-tfjs-error:"
INFER_TIMEOUT_S = 600.0


def runner_environment() -> dict[str, str]:
    """runner.js requires @tensorflow/* from the installed packages (`edgeport setup`), found through NODE_PATH."""
    existing = os.environ.get("NODE_PATH")
    paths = [str(tfjs_project.node_modules()), *([existing] if existing else [])]
    return {**os.environ, "NODE_PATH": os.pathsep.join(paths)}


def node_executable() -> str | None:
    return find_program(NODE_ENV, "node", "nodejs")


class TFJSNodeRuntime(Runtime):
    name = "tfjs-node"
    artifact_suffixes = (".json",)
    backends = BACKENDS
    description = "TF.js in Node.js (wasm backend, or cpu), loading model.json + weight shards from disk"

    def requirements(self):
        from edgeport.run.requirements import system_program, tfjs_packages

        return (
            system_program(
                "node", apt_packages=("nodejs",), env_var=NODE_ENV, aliases=("nodejs",), why="runs runner.js"
            ),
            tfjs_packages(why="@tensorflow/tfjs and its wasm backend"),
        )

    def availability(self) -> Availability:
        node = node_executable()
        if node is None:
            return Availability(
                False, f"Node.js not found: {missing_program(NODE_ENV, 'node')}; install it: {INSTALL_NODE}"
            )
        if not shared.program_version(node):
            return Availability(False, f"{node} --version fails; install Node.js: {INSTALL_NODE}")
        problem = tfjs_project.packages_problem()
        return Availability(problem is None, problem or "")

    def version(self) -> str:
        node = node_executable()
        node_version = (shared.program_version(node) if node else "") or "?"
        return f"tfjs {tfjs_project.installed_version()} on Node {node_version}"

    def infer(self, artifact: Path, samples: SampleSet, settings: RuntimeSettings) -> list[Feeds]:
        artifact = check_artifact(artifact)
        request = self._request(artifact, settings, mode="infer")
        _report, outputs = self._run(request, samples.feeds(), timeout=INFER_TIMEOUT_S)
        return tfjs_wire.restore_dtypes(outputs, artifact)

    def intermediates(self, artifact, samples, settings, names, aliases):
        """The samples executed to the layers' graph nodes (targets/tfjs/layers.py), on the same backend and
        within the same time limit as `infer`."""
        from edgeport.targets.tfjs.layers import plan_layers

        artifact = check_artifact(artifact)
        plan = plan_layers(artifact, names, aliases)
        request = self._request(artifact, settings, mode="intermediates") | {"layers": plan.request()}
        report, values = self._run(request, samples.feeds(), timeout=INFER_TIMEOUT_S)
        return plan.layer_run(values, report.get("layers") or {})

    def benchmark(
        self, artifact: Path, samples: SampleSet, settings: RuntimeSettings, protocol: TimingProtocol
    ) -> RawTimings:
        artifact = check_artifact(artifact)
        request = self._request(artifact, settings, mode="benchmark") | {"protocol": dataclasses.asdict(protocol)}
        report, _outputs = self._run(request, samples.feeds(), timeout=INFER_TIMEOUT_S + 2 * protocol.max_seconds)
        version = describe_engine(report, settings.threads, f"Node {report.get('node', '?')}")
        return raw_timings(report, peak_rss_bytes=report.get("peak_rss_bytes", 0), version=version)

    def _request(self, artifact: Path, settings: RuntimeSettings, *, mode: str) -> dict[str, Any]:
        backend = pick_backend(settings, BACKENDS, self.name, artifact)
        return {"mode": mode, "model": str(artifact), "backend": backend, "threads": int(settings.threads)}

    def _run(self, request: dict[str, Any], feeds: list[Feeds], *, timeout: float) -> tuple[dict, list[Feeds]]:
        availability = self.availability()
        if not availability.available:
            raise RuntimeUnavailable(f"runtime {self.name} unavailable: {availability.reason}")
        with tempfile.TemporaryDirectory(prefix="edgeport-tfjs-") as folder:
            request_path, response_path = Path(folder, "request.bin"), Path(folder, "response.bin")
            tfjs_wire.write_bundle(request_path, meta=request, samples=feeds)
            node = node_executable()
            if node is None:  # availability() found it a moment ago
                raise RuntimeUnavailable(f"runtime {self.name} unavailable: Node.js not found")
            # dies with the process running this (a worker): a worker killed with edgeport takes Node along
            command = dies_with_parent([node, str(RUNNER), str(request_path), str(response_path)])
            try:
                done = subprocess.run(
                    command,
                    capture_output=True,
                    text=True,
                    errors="replace",
                    timeout=timeout,
                    cwd=shared.PROJECT_DIR,
                    env=runner_environment(),
                    check=False,
                )
            except subprocess.TimeoutExpired:
                raise RuntimeFailure(
                    f"tfjs-node ({request['backend']}) on {request['model']} did not finish within "
                    f"{timeout:.0f} s; the model is too slow here or the runner hangs"
                ) from None
            if done.returncode != 0 or not response_path.is_file():
                raise RuntimeFailure(runner_failure(done.returncode, done.stderr, request))
            return tfjs_wire.read_bundle(response_path)


def runner_failure(returncode: int, stderr: str, request: Mapping[str, Any]) -> str:
    """One line: what Node said (or which signal / exit code ended it), for which model and backend."""
    where = f"tfjs-node ({request['backend']}) on {request['model']}"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    reported = [line[len(ERROR_PREFIX) :].strip() for line in lines if line.startswith(ERROR_PREFIX)]
    if reported:
        return f"{where}: {reported[-1]}"
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"{where}: the Node runner was killed by {name} mid-run (out of memory?); run it again or check dmesg"
    last = f": {lines[-1][:300]}" if lines else ""
    return f"{where}: the Node runner exited with code {returncode}{last}"
