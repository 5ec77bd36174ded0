"""A large model's weights into its ONNX graph, from the variables themselves (model/weight_references.py).

tf2onnx converts the frozen graph with each weight kept by reference as one more graph input; here each such
input becomes an initializer. Written straight to ONNX external data (`location`, page-aligned `offset`,
`length`), one variable at a time, so the weights never sit in the ModelProto and no GraphDef or protobuf
holds them (protobuf stops at 2 GB). A Transpose tf2onnx put on a weight alone (a convolution's kernel to
OIHW) is applied to the values as they are written. For the variants that rewrite the weights in memory
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
    Returns the bytes written.
    """
    from onnx import TensorProto, helper, numpy_helper

    by_input = {ref.tensor: ref for ref in references}
    bound = [value for value in model.graph.input if value.name in by_input]
    for value in bound:
        model.graph.input.remove(value)
    written = 0
    with data_file.open("wb") if data_file else _NoFile() as sink:
        for value in bound:
            array = by_input[value.name].value()
            name, array = _folded_transposes(model.graph, value.name, array)
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            if data_file is None:
                model.graph.initializer.append(numpy_helper.from_array(array, name))
                continue
            offset = -(-written // ALIGNMENT) * ALIGNMENT
            sink.write(b"\0" * (offset - written))
            sink.write(array.reshape(-1).data.cast("B"))
            written = offset + array.nbytes
            tensor = helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(array.dtype), array.shape)
            initializer = TensorProto(name=name, data_type=tensor.type.tensor_type.elem_type, dims=array.shape)
            initializer.data_location = TensorProto.EXTERNAL
            for key, entry in (("location", data_file.name), ("offset", offset), ("length", array.nbytes)):
                initializer.external_data.add(key=key, value=str(entry))
            model.graph.initializer.append(initializer)
            del array
    return written


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


class _NoFile:
    def __enter__(self):
        return None

    def __exit__(self, *exc) -> None:
        return None
