"""Every operator output of a .tflite, for the per-layer comparison (checks/layers), on LiteRT's reference path.

Shared by the LiteRT runtime and TFLite Micro's: TFLM's host interpreter exposes no intermediate tensors, so
its per-layer comparison runs the same int8 flatbuffer here. All tensors are preserved
(`experimental_preserve_all_tensors`) on the builtin kernels without the default delegates (a delegated
XNNPACK partition keeps no intermediates); values are dequantized with each tensor's scale and zero point and
matched to the TF layers by TFLite's tensor names (fused: `a;b`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgeport.errors import RuntimeFailure
from edgeport.formats.tflite.quantization import dequantize, quantize

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.checks.layers import LayerRun
    from edgeport.data import SampleSet


def litert_intermediates(
    artifact: Path, samples: SampleSet, threads: int, names: Sequence[str], aliases: Mapping[str, str]
) -> LayerRun:
    """Per sample of `samples`: TF layer name (of `names`) -> the operator output standing for it."""
    from edgeport.checks.layers import LayerRun

    interpreter = _preserving_interpreter(artifact, threads)
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise RuntimeFailure(f"{artifact} has no signature")
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    inputs = runner.get_input_details()
    details = {int(d["index"]): d for d in interpreter.get_tensor_details()}
    indices = _layer_tensors(artifact, details, runner.get_output_details(), names, aliases)
    values = []
    for feed in samples.feeds():
        runner(**{name: quantize(np.asarray(feed[name]), detail) for name, detail in inputs.items()})
        values.append(
            {
                layer: np.asarray(dequantize(interpreter.get_tensor(index), details[index]), dtype=np.float32)
                for layer, index in indices.items()
            }
        )
    artifact_names = {layer: details[index]["name"] for layer, index in indices.items()}
    return LayerRun(values=values, artifact_names=artifact_names, graph_id="main")


def _preserving_interpreter(artifact: Path, threads: int):
    """An interpreter keeping every tensor, on the builtin kernels (no delegate fuses them away)."""
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is what this is for
        try:
            return Interpreter(
                model_path=str(artifact),
                num_threads=threads,
                experimental_preserve_all_tensors=True,
                experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
            )
        except (ValueError, RuntimeError) as exc:
            raise RuntimeFailure(f"LiteRT cannot load {artifact}: {str(exc).splitlines()[0]}") from None


def _layer_tensors(
    artifact: Path,
    details: Mapping[int, Mapping[str, Any]],
    outputs: Mapping[str, Mapping[str, Any]],
    names: Sequence[str],
    aliases: Mapping[str, str],
) -> dict[str, int]:
    """TF layer name -> tensor index: operator outputs matched by name (in execution order), then the
    signature's outputs for the layers they compute (an output tensor takes the signature's name)."""
    from edgeport.checks.layers import match_names
    from edgeport.formats.tflite.flatbuffer import operator_outputs

    produced = [index for index in operator_outputs(artifact) if index in details]
    by_name = {details[index]["name"]: index for index in produced}
    indices = {layer: by_name[tensor] for tensor, layer in match_names(by_name, names).items()}
    for output, layer in aliases.items():
        if layer not in indices and output in outputs:
            indices[layer] = int(outputs[output]["index"])
    return indices
