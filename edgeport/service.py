"""The model service: lives in one TensorFlow worker process, holds the SavedModel loaded once.

Reference outputs, pre-flight and every conversion run here, on the same loaded model and the same frozen
graph. The orchestrating process never imports TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.contracts import Artifact, ConversionJob, Converter, Feeds, Finding, SampleSet, Signature, TargetSpec


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


class ModelService:
    def __init__(self, path: str, signature: str | None, tags: tuple[str, ...] | None, force_v1: bool):
        from edgeport.model import load_model  # noqa: PLC0415

        self.model = load_model(Path(path), signature, tags, force_v1=force_v1)

    def describe(self) -> ModelInfo:
        from importlib.metadata import version  # noqa: PLC0415

        model = self.model
        return ModelInfo(path=str(model.path), tags=model.tags, signature=model.signature,
                         signature_keys=model.signature_keys, mode=model.mode, notes=model.notes,
                         size_bytes=model.size_bytes(), parameters=model.parameter_count(),
                         tensorflow_version=version("tensorflow"))

    def reference(self, samples: SampleSet) -> list[Feeds]:
        return self.model.reference(samples.feeds())

    def convert(self, converter: Converter, target: TargetSpec, options: Any, calibration: SampleSet,
                workdir: str) -> Artifact:
        job = ConversionJob(model=self.model, target=target, options=options, calibration=calibration,
                            workdir=Path(workdir))
        return converter.convert(job)

    def preflight(self, checks: list[tuple[Converter, Any]]) -> list[Finding]:
        findings: list[Finding] = []
        for converter, options in checks:
            try:
                findings.extend(converter.preflight(self.model, options))
            except Exception as exc:  # noqa: BLE001 - one plug-in's pre-flight failing must not hide the others
                findings.append(Finding(converter.name, "warning", f"pre-flight failed: {type(exc).__name__}: {exc}"))
        return findings

    def graph_summary(self) -> dict[str, Any]:
        from edgeport.model import CONTROL_FLOW_OPS  # noqa: PLC0415

        histogram = self.model.frozen.op_histogram()
        signature = self.model.signature
        dynamic = [s.describe() for s in signature.inputs + signature.outputs
                   if s.shape is None or any(d is None for d in s.shape[1:])]
        special = [s.describe() for s in signature.inputs + signature.outputs if s.dtype in ("string", "resource", "variant")]
        return {
            "op_histogram": histogram,
            "control_flow_ops": sorted(op for op in histogram if op in CONTROL_FLOW_OPS),
            "dynamic_shapes": dynamic,
            "string_or_resource_tensors": special,
        }
