"""The model service: lives in one TensorFlow worker process, holds the SavedModel loaded once.

Reference outputs, pre-flight and every conversion run here, on the same loaded model and the same frozen
graph. The orchestrating process never imports TensorFlow. Before the SavedModel is loaded (loading runs its
initializers), the pre-load scan reads it: a model it flags is refused unless the run trusts it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgeport.contracts import ConversionJob, Converter, Session
from edgeport.data import (
    Artifact,
    Feeds,
    Finding,
    RawTimings,
    SampleSet,
    Signature,
    TargetSpec,
    TimingProtocol,
)
from edgeport.errors import UntrustedModel
from edgeport.model.input_ranges import InferredRange
from edgeport.model.scan import ScanResult, refusal, trust_note


@dataclass(frozen=True)
class ModelInfo:
    path: str
    tags: tuple[str, ...]
    signature: Signature
    signature_keys: tuple[str, ...]
    mode: str
    notes: tuple[str, ...]
    size_bytes: int
    parameters: int
    tensorflow_version: str
    vocabulary: tuple[str, ...] = ()  # words the model knows, for synthetic string inputs (string inputs only)
    scan: ScanResult = ScanResult()  # the pre-load scan (edgeport.model.scan)
    trusted: bool = False  # run with --trust-model
    weights_bytes: int = 0  # variables/ (LoadedModel.weights_bytes)
    large: bool = False  # weights past the large-model threshold (LoadedModel.large)
    input_ranges: Mapping[str, InferredRange] = field(default_factory=dict)  # what the graph says the numeric
    # inputs take, for synthetic samples (edgeport.model.input_ranges)


class _Runner(Session):
    def __init__(self, run):
        self._run = run

    def run(self, feeds: Feeds) -> Feeds:
        return self._run(feeds)


class ModelService:
    def __init__(
        self,
        path: str,
        signature: str | None,
        tags: tuple[str, ...] | None,
        force_v1: bool,
        threads: int = 1,
        trust_model: bool = False,
    ):
        from edgeport.model.savedmodel import load_model
        from edgeport.model.scan import scan_saved_model
        from edgeport.model.tf_quiet import import_tensorflow

        start = time.perf_counter()
        tf = import_tensorflow()
        self.scan = scan_saved_model(Path(path))  # before anything of the model runs
        if not self.scan.clean and not trust_model:
            raise UntrustedModel(refusal(path, self.scan), self.scan)
        self.trusted = trust_model
        tf.config.threading.set_intra_op_parallelism_threads(threads)  # the baseline runs with the run's threads
        tf.config.threading.set_inter_op_parallelism_threads(1)
        self.model = load_model(Path(path), signature, tags, force_v1=force_v1)
        self.load_ms = (time.perf_counter() - start) * 1e3

    def describe(self) -> ModelInfo:
        from importlib.metadata import version

        model = self.model
        return ModelInfo(
            path=str(model.path),
            tags=model.tags,
            signature=model.signature,
            signature_keys=model.signature_keys,
            mode=model.mode,
            notes=model.notes + ((trust_note(self.scan),) if self.trusted and not self.scan.clean else ()),
            size_bytes=model.size_bytes(),
            weights_bytes=model.weights_bytes(),
            large=model.large,
            parameters=model.parameter_count(),
            tensorflow_version=version("tensorflow"),
            vocabulary=self._vocabulary(),
            input_ranges=self._input_ranges(),
            scan=self.scan,
            trusted=self.trusted,
        )

    def _vocabulary(self) -> tuple[str, ...]:
        if not any(spec.dtype == "string" for spec in self.model.signature.inputs):
            return ()
        from edgeport.model.vocabulary import model_vocabulary

        try:
            graph_def, tables = self.model.frozen.graph_def, tuple(self.model.tables.values())
        except Exception:  # noqa: BLE001 - a graph that cannot be frozen still has its assets
            graph_def, tables = None, ()
        return model_vocabulary(graph_def, self.model.path, tables)

    def _input_ranges(self) -> dict[str, InferredRange]:
        """Read from the shared frozen graph, which every converter builds anyway; not for a large model
        loaded in a v1 session (its freeze folds every weight into the graph: reading it would cost that)."""
        from edgeport.model.input_ranges import graph_input_ranges

        model = self.model
        if model.large and model.mode != "tf2":
            return {}
        try:
            frozen = model.frozen
        except Exception:  # noqa: BLE001 - a graph that cannot be frozen draws from the default ranges
            return {}
        return graph_input_ranges(
            frozen.graph_def, frozen.input_tensors, {s.name: s.dtype for s in model.signature.inputs}
        )

    def reference(self, samples: SampleSet) -> list[Feeds]:
        return self.model.reference(samples.feeds())

    def intermediates(self, samples: SampleSet, count: int):
        """Every layer's output of the frozen graph on the first `count` samples (model/intermediates)."""
        from edgeport.model.intermediates import reference_intermediates

        return reference_intermediates(self.model.frozen, samples.feeds()[:count])

    def benchmark(self, samples: SampleSet, protocol: TimingProtocol) -> RawTimings:
        """The baseline row: the SavedModel on TensorFlow, timed with the same protocol as every artifact.

        It runs here, in the model service's own process, before any conversion, so TensorFlow is imported
        and the SavedModel loaded once per run; its load time is the service's.
        """
        from importlib.metadata import version

        from edgeport.checks.timing import time_session

        run = self.model.session_runner()
        raw = time_session(lambda: _Runner(run), samples, protocol, f"tensorflow {version('tensorflow')}")
        return dataclasses.replace(raw, load_ms=self.load_ms)

    def convert(
        self,
        converter: Converter,
        target: TargetSpec,
        options: Any,
        calibration: SampleSet,
        workdir: str,
        float_layers: tuple[str, ...] = (),
    ) -> Artifact:
        job = ConversionJob(
            model=self.model,
            target=target,
            options=options,
            calibration=calibration,
            workdir=Path(workdir),
            float_layers=float_layers,
        )
        return converter.convert(job)

    def validate(self, plans: list[tuple[Converter, str, Any]]) -> None:
        for converter, variant, options in plans:
            converter.validate(self.model, variant, options)

    def preflight(self, checks: list[tuple[Converter, Any]]) -> list[Finding]:
        findings: list[Finding] = []
        for converter, options in checks:
            try:
                findings.extend(converter.preflight(self.model, options))
            except Exception as exc:  # noqa: BLE001 - one plug-in's pre-flight failing must not hide the others
                findings.append(Finding(converter.name, "warning", f"pre-flight failed: {type(exc).__name__}: {exc}"))
        return findings

    def graph_summary(self) -> dict[str, Any]:
        from edgeport.model.savedmodel import CONTROL_FLOW_OPS

        histogram = self.model.frozen.op_histogram()
        signature = self.model.signature
        dynamic = [
            s.describe()
            for s in signature.inputs + signature.outputs
            if s.shape is None or any(d is None for d in s.shape[1:])
        ]
        special = [
            s.describe() for s in signature.inputs + signature.outputs if s.dtype in ("string", "resource", "variant")
        ]
        return {
            "op_histogram": histogram,
            "control_flow_ops": sorted(op for op in histogram if op in CONTROL_FLOW_OPS),
            "dynamic_shapes": dynamic,
            "string_or_resource_tensors": special,
        }
