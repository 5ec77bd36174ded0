"""int8 calibration on LiteRT for models the converter's own calibrator cannot feed: string inputs.

The converter's calibrator copies each input's numpy bytes into its tensor as they are (calibration_wrapper
`SetTensor`), which is no TFLite string buffer: a model fed words calibrates on garbage, every lookup misses,
and the quantized model computes zeros (a StringLookup model: cosine 0.76). Here the float model runs on LiteRT's
interpreter, which encodes strings, with every tensor preserved; each float tensor's min and max over the
calibration samples are written into its quantization parameters, where the calibrator writes them, and the
converter's MLIR quantizer (what `TFLiteConverter` runs after calibrating) does the rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgeport.data import Feeds


def has_string_inputs(flatbuffer: bytes) -> bool:
    from ai_edge_litert.schema_py_generated import TensorType

    from edgeport.formats.tflite.flatbuffer import read_model

    subgraph = read_model(flatbuffer).subgraphs[0]
    return any(subgraph.tensors[index].type == TensorType.STRING for index in subgraph.inputs)


def calibrable_here(flatbuffer: bytes) -> bool:
    """One subgraph only: LiteRT keeps the last value of a control-flow body's tensors, not each iteration's."""
    from edgeport.formats.tflite.flatbuffer import read_model

    return len(read_model(flatbuffer).subgraphs) == 1


def calibrate_on_litert(flatbuffer: bytes, feeds: Sequence[Feeds]) -> bytes:
    """The float model with every non-constant float tensor's (min, max) over `feeds` as its quantization."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    ranges = _ranges(flatbuffer, feeds)
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    tensors = model.subgraphs[0].tensors
    for index, (low, high) in ranges.items():
        parameters = tensors[index].quantization or schema.QuantizationParametersT()
        parameters.min, parameters.max = [float(low)], [float(high)]
        tensors[index].quantization = parameters
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _ranges(flatbuffer: bytes, feeds: Sequence[Feeds]) -> dict[int, tuple[float, float]]:
    import warnings

    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "preserve_all_tensors is for debugging": it is what this needs
        interpreter = Interpreter(
            model_content=flatbuffer,
            experimental_preserve_all_tensors=True,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    inputs = runner.get_input_details()
    measured = _measured_tensors(flatbuffer)
    ranges: dict[int, tuple[float, float]] = {}
    for feed in feeds:
        runner(**{name: np.asarray(feed[name]).astype(detail["dtype"]) for name, detail in inputs.items()})
        for index in measured:
            values = interpreter.get_tensor(index)
            if values.size == 0:
                continue
            low, high = float(np.min(values)), float(np.max(values))
            if index in ranges:
                low, high = min(low, ranges[index][0]), max(high, ranges[index][1])
            ranges[index] = (low, high)
    return ranges


def _measured_tensors(flatbuffer: bytes) -> list[int]:
    """The float tensors the calibrator logs: every operator's non-constant inputs and outputs."""
    from ai_edge_litert.schema_py_generated import TensorType

    from edgeport.formats.tflite.flatbuffer import read_model

    model: Any = read_model(flatbuffer)
    subgraph = model.subgraphs[0]
    indices: set[int] = set()
    for operator in subgraph.operators:
        for index in [*operator.inputs, *operator.outputs]:
            if index < 0:
                continue
            tensor = subgraph.tensors[index]
            constant = tensor.buffer > 0 and model.buffers[tensor.buffer].data is not None
            if tensor.type == TensorType.FLOAT32 and not constant:
                indices.add(int(index))
    return sorted(indices)
