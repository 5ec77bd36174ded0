"""A large model's weights into its ONNX graph, from the variables themselves (model/weight_references.py).

tf2onnx converts the frozen graph with each weight kept by reference as one more graph input; here each such
input becomes an initializer. Written straight to ONNX external data (`location`, page-aligned `offset`,
`length`), one variable at a time, so the weights never sit in the ModelProto and no GraphDef or protobuf
holds them (protobuf stops at 2 GB). A Transpose tf2onnx put on a weight alone (a convolution's kernel to
OIHW) is applied to the values as they are written; any other weight is streamed in slices of its
variable (WeightReference.chunks). For the variants that rewrite the weights in memory
(fp16, int8) the initializers are bound in memory instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

ALIGNMENT = 4096  # each tensor starts on a page: onnxruntime can map it


def bind_weights(model, references: Sequence, *, data_file: Path | None) -> int:
    """Replace the graph inputs named like `references` (WeightReference) by initializers of their values.

    `data_file`: write the values there as external data (its name is the `location`); None: in memory.
    Returns the bytes written to `data_file`.
    """
    from onnx import numpy_helper

    by_input = {ref.tensor: ref for ref in references}
    bound = [value for value in model.graph.input if value.name in by_input]
    for value in bound:
        model.graph.input.remove(value)
    if data_file is None:
        for value in bound:
            name, array = _value(model.graph, value.name, by_input[value.name])
            model.graph.initializer.append(numpy_helper.from_array(array, name))
        return 0
    from edgeport.model.weight_references import write_aligned

    written = 0
    with data_file.open("wb") as sink:
        for value in bound:
            reference = by_input[value.name]
            if _consumers(model.graph, value.name) == ["Transpose"]:  # applied to the whole value as written
                name, array = _value(model.graph, value.name, reference)
                dtype, dims, pieces = array.dtype, array.shape, [array]
            else:  # streamed in slices: never the whole variable at once
                name, dtype, dims, pieces = value.name, np.dtype(reference.dtype), reference.shape, reference.chunks()
            offset, length = write_aligned(sink, written, pieces, dtype, ALIGNMENT)
            model.graph.initializer.append(_external(name, dtype, dims, data_file.name, offset, length))
            written = offset + length
            del pieces
    return written


def _consumers(graph, name: str) -> list[str]:
    return [node.op_type for node in graph.node if name in node.input]


def _value(graph, name: str, reference) -> tuple[str, np.ndarray]:
    """(initializer name, little-endian contiguous value) of one weight, its lone Transposes applied."""
    name, array = _folded_transposes(graph, name, reference.value())
    return name, np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def _external(name: str, dtype: np.dtype, dims, location: str, offset: int, length: int):
    from onnx import TensorProto, helper

    initializer = TensorProto(name=name, data_type=helper.np_dtype_to_tensor_dtype(dtype), dims=dims)
    initializer.data_location = TensorProto.EXTERNAL
    for key, entry in (("location", location), ("offset", offset), ("length", length)):
        initializer.external_data.add(key=key, value=str(entry))
    return initializer


def _folded_transposes(graph, name: str, array: np.ndarray) -> tuple[str, np.ndarray]:
    """Follow Transpose nodes that are a weight's only consumer: apply them to the values, drop the nodes."""
    outputs = {value.name for value in graph.output}
    while name not in outputs:
        consumers = [node for node in graph.node if name in node.input]
        if len(consumers) != 1 or consumers[0].op_type != "Transpose" or consumers[0].domain not in ("", "ai.onnx"):
            break
        node = consumers[0]
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        array = np.transpose(array, perm)
        graph.node.remove(node)
        name = node.output[0]
    return name, array
