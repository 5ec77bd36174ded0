"""Layers and refits: the per-layer comparison of a target, and `-O quant_fallback=auto`'s reconversions.

`LayerSource` computes the SavedModel's intermediates once (in the run's model service with --layers, else in
a fresh one when the first check fails), then per target the artifact's, in its own runtime process.
`Refits` reconverts a failed quantized target with the layers that add the most error kept in float
(run/quant_fallback picks them), checks each candidate like any artifact, and installs the one that passes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from edgeport.checks.accuracy import default_tolerance
from edgeport.data import Artifact, Event, SampleSet
from edgeport.errors import EdgeportError
from edgeport.run import quant_fallback
from edgeport.run.check import Checked, check_artifact
from edgeport.run.convert import convert_in
from edgeport.run.isolation import Worker, call_isolated
from edgeport.run.load import start_service
from edgeport.run.output_folder import OutputFolder
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.reference import Reference
from edgeport.run.request import RunRequest
from edgeport.run.runtime_calls import run_layers


class LayerSource:
    """The per-layer comparison (checks/layers) of a run, within the check stage's time limit."""

    def __init__(self, request: RunRequest, samples: SampleSet, logs: Path):
        from edgeport.checks.layers import LAYER_SAMPLES

        self._request = request
        count = min(LAYER_SAMPLES, samples.count)
        self.samples = dataclasses.replace(samples, arrays={k: v[:count] for k, v in samples.arrays.items()})
        self._logs = logs
        self._reference: Any = None
        self._failure = ""
        self._lock = threading.Lock()
        self.files: dict[str, str] = {}  # Model Explorer node data files, by name in OUT

    def compute(self, service: Worker, progress: Progress) -> None:
        progress(Event("model", "layers", "started", f"{self.samples.count} samples"))
        try:
            self._reference = service.call_within(
                self._request.timeouts.check, "check", "intermediates", self.samples, self.samples.count
            )
        except EdgeportError as exc:
            self._failure = f"the SavedModel's intermediates: {exc.message}"
            progress(Event("model", "layers", "failed", self._failure))
            return
        progress(Event("model", "layers", "passed", f"{len(self._reference.layers)} layers"))

    def reference(self, progress: Progress):
        with self._lock:  # checks run on several threads: the reference is computed once
            return self._computed_reference(progress)

    def _computed_reference(self, progress: Progress):
        if self._reference is None and not self._failure:
            try:
                service = start_service(self._request, self._logs / "model-layers.log")
            except EdgeportError as exc:
                self._failure = f"the SavedModel's intermediates: {exc.message}"
                return None
            try:
                self.compute(service, progress)
            finally:
                service.close()
        return self._reference

    def compare(
        self, plan: TargetPlan, artifact: Artifact, main: Path, progress: Progress, *, record: bool = True
    ) -> dict[str, Any]:
        """`record`: write its Model Explorer file (False for quant_fallback's candidates)."""
        from edgeport.checks.layers import compare_layers

        name = plan.name
        reference = self.reference(progress)
        if reference is None:
            return {"error": self._failure, "first_divergent": None, "worst": [], "tensors": []}
        progress(Event(name, "layers", "started"))
        start = time.perf_counter()
        try:
            run = call_isolated(
                run_layers,
                plan.runtime,
                str(main),
                self.samples,
                plan.settings,
                tuple(layer.name for layer in reference.layers),
                reference.aliases,
                log_path=self._logs / f"{plan.slug}-layers.log",
                what=f"{plan.runtime.name} runtime (per-layer)",
                timeout=self._request.timeouts.check,
                stage="check",
            )
        except EdgeportError as exc:
            text = exc.message
            if "NotImplementedError" in text or "has no per-layer comparison" in text:
                text = f"per-layer comparison not supported by runtime {plan.runtime.name}"
            progress(Event(name, "layers", "skipped", text))
            return {"error": text, "first_divergent": None, "worst": [], "tensors": []}
        tolerance = default_tolerance(artifact.precision).replace(**plan.config.tolerance)
        report = compare_layers(reference, run, tolerance.min_cosine)
        data = report.to_dict()
        data["seconds"] = round(time.perf_counter() - start, 3)
        file = f"{plan.slug}.model-explorer.json"
        if record:
            self.files[file] = json.dumps(report.node_data, indent=1) + "\n"
            data["model_explorer_file"] = file
        said = report.first_divergent or "none"
        progress(Event(name, "layers", "passed", f"first divergent layer: {said}"))
        return data


@dataclasses.dataclass(frozen=True)
class Candidate:
    """A reconversion with some layers in float: its artifact, the staging folder it sits in, its check."""

    artifact: Artifact
    staging: Path
    checked: Checked


class Refits:
    """The reconversions of failed quantized targets, in one model service started when the first target
    needs it; each candidate is staged in OUT, checked and compared layer by layer on its runtime like any
    artifact, and only the one that passes is installed."""

    def __init__(self, request: RunRequest, calibration: SampleSet, folder: OutputFolder, layers: LayerSource) -> None:
        self._request = request
        self._calibration = calibration
        self._folder = folder
        self._layers = layers
        self._service: Worker | None = None
        self._staged: list[Path] = []
        self._lock = threading.Lock()

    @staticmethod
    def wanted(plan: TargetPlan) -> bool:
        return getattr(plan.options, "quant_fallback", "off") == "auto"

    def run(self, plan: TargetPlan, layers, references: tuple[Reference, ...], progress: Progress):
        """(FallbackOutcome, the passing Trial or None)."""
        name = plan.name
        why_not = plan.converter.float_fallback(plan.config.spec.variant)
        if why_not is not None:
            outcome = quant_fallback.unavailable(why_not, layers)
            progress(Event(name, "fallback", "failed", outcome.reason))
            return outcome, None
        reference = self._layers.reference(progress)
        inputs = {layer.name: layer.inputs for layer in reference.layers} if reference is not None else {}
        progress(Event(name, "fallback", "started", "keeping the layers that add the most error in float"))

        def attempt(float_layers: tuple[str, ...]) -> quant_fallback.Trial:
            return self._attempt(plan, float_layers, references, progress)

        outcome = quant_fallback.keep_layers_in_float(layers, inputs, attempt)
        for trial in outcome.trials:  # every candidate but the chosen one goes now
            if trial is not outcome.chosen and trial.payload is not None:
                shutil.rmtree(trial.payload.staging, ignore_errors=True)
        if outcome.chosen is None:
            progress(Event(name, "fallback", "failed", outcome.reason))
        return outcome, outcome.chosen

    def _attempt(self, plan: TargetPlan, float_layers: tuple[str, ...], references, progress: Progress):
        request = self._request
        staging = Path(tempfile.mkdtemp(prefix=f".staging-{plan.slug}-", dir=request.out))
        self._staged.append(staging)
        try:
            with self._lock:  # one model service for every target's reconversions: one call at a time
                artifact = convert_in(self._worker(), request, plan, self._calibration, staging, float_layers)
        except EdgeportError as exc:  # a stopped service is replaced by _worker() for the next attempt
            shutil.rmtree(staging, ignore_errors=True)
            return quant_fallback.Trial(float_layers, passed=False, failure=exc.message, converted=False)
        main = staging / artifact.main_file
        checked = check_artifact(request, plan, artifact, main, references, request.out / "logs", progress)
        passed = checked.stage.status == "passed"
        layers = None if passed else self._layers.compare(plan, artifact, main, progress, record=False)
        return quant_fallback.Trial(
            float_layers, passed, checked.stage.reason, layers, payload=Candidate(artifact, staging, checked)
        )

    def _worker(self) -> Worker:
        if self._service is None or not self._service.alive:
            self._service = start_service(self._request, self._request.out / "logs" / "model-fallback.log")
        return self._service

    def install(self, plan: TargetPlan, trial: quant_fallback.Trial) -> tuple[Path, Candidate]:
        """Put the passing candidate in OUT/<slug>; the all-quantized artifact moves to a staging folder of its
        own, kept for its benchmark (the fallback's cost). (that artifact's folder, the candidate)."""
        candidate: Candidate = trial.payload
        kept = Path(tempfile.mkdtemp(prefix=f".staging-{plan.slug}-all-quantized-", dir=self._request.out))
        self._staged.append(kept)
        os.rename(self._request.out / plan.slug, kept / "artifact")
        self._folder.install(candidate.staging, plan.slug, plan.name)
        return kept / "artifact", candidate

    def close(self) -> None:
        if self._service is not None:
            self._service.close()
        for staging in self._staged:
            shutil.rmtree(staging, ignore_errors=True)  # installed ones were renamed away already
