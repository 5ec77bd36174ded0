"""LiteRT runtime: the `ai_edge_litert` Interpreter (XNNPACK on CPU) through the model's signature runner.

Inputs and outputs are keyed by the signature's names. Quantized inputs are quantized and quantized outputs
dequantized with each tensor's own scale and zero point, so callers always see real values. Dynamic
dimensions are resized by the signature runner.
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

    def run(self, feeds: Feeds) -> Feeds:
        if set(feeds) != set(self._inputs):
            raise RuntimeFailure(
                f"the .tflite signature takes inputs {', '.join(sorted(self._inputs))}; got "
                f"{', '.join(sorted(feeds))}: was it converted from this model and signature?"
            )
        args = {name: quantize(np.asarray(feeds[name]), detail) for name, detail in self._inputs.items()}
        outputs = self._runner(**args)
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
