"""A copy of the frozen graph whose dynamic batch is fixed, for converters that need static shapes.

Fixing the inputs' batch is not enough for recurrent layers: their TensorList ops (TensorListReserve,
TensorListFromTensor, TensorListStack, TensorListGetItem...) carry the element shape traced with a dynamic
batch as a constant, `[-1, units]`: a list holds one time step per element, so its leading dimension is the
batch (a sequence's dynamic length is the list's length, not part of its elements). That -1 is set to the
fixed batch; the check against the SavedModel is what proves the result. Library functions of the copy are
renamed, so they never clash with the originals registered in this process.
"""

from __future__ import annotations

from typing import Any

ELEMENT_SHAPE_INPUT = {
    "TensorListReserve": 0,
    "EmptyTensorList": 0,
    "TensorListFromTensor": 1,
    "TensorListStack": 1,
    "TensorListGetItem": 2,
    "TensorListPopBack": 1,
}
RENAMED_SUFFIX = "_edgeport_fixed_batch"


def fixed_batch_graph_def(graph_def: Any, batch: int = 1) -> tuple[Any, int]:
    """(a patched copy of `graph_def`, how many element shapes were fixed)."""
    patched = type(graph_def)()
    patched.CopyFrom(graph_def)
    scopes = [list(patched.node)] + [list(function.node_def) for function in patched.library.function]
    fixed = sum(_fix_element_shapes(nodes, batch) for nodes in scopes)
    _rename_functions(patched)
    return patched, fixed


def _fix_element_shapes(nodes: list, batch: int) -> int:
    from tensorflow.python.framework import tensor_util

    by_name = {node.name: node for node in nodes}
    count = 0
    for node in nodes:
        position = ELEMENT_SHAPE_INPUT.get(node.op)
        if position is None or position >= len(node.input):
            continue
        source = by_name.get(node.input[position].split(":")[0].lstrip("^"))
        if source is None or source.op != "Const":
            continue
        shape = tensor_util.MakeNdarray(source.attr["value"].tensor)
        if shape.ndim != 1 or shape.size < 2 or shape[0] != -1 or (shape[1:] < 0).any():
            continue
        shape = shape.copy()
        shape[0] = batch
        source.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(shape))
        count += 1
    return count


def _rename_functions(graph_def: Any) -> None:
    names = {f.signature.name: f.signature.name + RENAMED_SUFFIX for f in graph_def.library.function}
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    for node in nodes:
        for value in node.attr.values():
            if value.HasField("func") and value.func.name in names:
                value.func.name = names[value.func.name]
            for function in value.list.func:
                if function.name in names:
                    function.name = names[function.name]
    for function in graph_def.library.function:
        function.signature.name = names[function.signature.name]
    for gradient in graph_def.library.gradient:
        gradient.function_name = names.get(gradient.function_name, gradient.function_name)
