"""LiteRT runtime: the `ai_edge_litert` Interpreter (XNNPACK on CPU) through the model's signature runner.

Inputs and outputs are keyed by the signature's names. Quantized inputs are quantized and quantized outputs
dequantized with each tensor's own scale and zero point, so callers always see real values; the benchmark
quantizes its feeds before the clock starts and times the signature runner alone (set the inputs, invoke, copy
the outputs). Dynamic dimensions are resized by the signature runner.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.contracts import Feeds, Runtime, RuntimeSettings, Session
from edgeport.errors import RuntimeFailure
from edgeport.formats.tflite.quantization import dequantize, quantize


class LiteRTSession(Session):
    def __init__(self, path: Path, threads: int):
        from ai_edge_litert.interpreter import Interpreter

        try:
            self._interpreter = Interpreter(model_path=str(path), num_threads=threads)
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"LiteRT cannot load {path}: {str(exc).splitlines()[0]}") from None
        signatures = self._interpreter.get_signature_list()
        if not signatures:
            raise RuntimeFailure(f"{path} has no signature; convert it with edgeport or from a SavedModel signature")
        self._runner = self._interpreter.get_signature_runner(next(iter(signatures)))
        self._inputs = self._runner.get_input_details()
        self._outputs = self._runner.get_output_details()

    def prepare(self, feeds: Feeds) -> Feeds:
        """Feeds in the inputs' own dtypes (int8 I/O: quantized with each input's scale and zero point)."""
        if set(feeds) != set(self._inputs):
            raise RuntimeFailure(
                f"the .tflite signature takes inputs {', '.join(sorted(self._inputs))}; got "
                f"{', '.join(sorted(feeds))}: was it converted from this model and signature?"
            )
        return {name: quantize(np.asarray(feeds[name]), detail) for name, detail in self._inputs.items()}

    def run_prepared(self, prepared: Feeds) -> Feeds:
        """The timed call: set the inputs, invoke, copy the outputs out (in the model's own dtypes)."""
        return self._runner(**prepared)

    def run(self, feeds: Feeds) -> Feeds:
        outputs = self.run_prepared(self.prepare(feeds))
        return {name: dequantize(value, self._outputs[name]) for name, value in outputs.items()}


class LiteRTRuntime(Runtime):
    name = "litert"
    artifact_suffixes = (".tflite",)
    description = "LiteRT interpreter (ai-edge-litert) with XNNPACK, on this CPU"

    def version(self) -> str:
        from importlib.metadata import version

        return f"ai-edge-litert {version('ai-edge-litert')}"

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        return LiteRTSession(artifact, settings.threads)

    def intermediates(self, artifact, samples, settings, names, aliases):
        """Every operator output, with all tensors preserved (`experimental_preserve_all_tensors`) on the
        builtin kernels (no XNNPACK delegate: a delegated partition keeps no intermediates), dequantized with
        each tensor's scale and zero point; TF names matched from TFLite's tensor names (fused: `a;b`)."""
        from edgeport.formats.tflite.intermediates import litert_intermediates

        return litert_intermediates(artifact, samples, settings.threads, names, aliases)
