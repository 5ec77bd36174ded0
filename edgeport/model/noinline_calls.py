"""Function calls the freeze could not inline because the function says `_noinline`.

A `tf.function(jit_compile=True)` inside a Keras 3 layer (ConvNeXt's depthwise convolutions, for one) is
marked `_noinline` (and `_XlaMustCompile`). `convert_variables_to_constants_v2` folds its variables into the
function body but leaves the StatefulPartitionedCall, and no converter runs a call. Clearing those marks on
the functions and the calls lets the graph be inlined again (edgeport.model.savedmodel), leaving the plain
graph every converter takes. XLA compilation is a TensorFlow runtime choice that no edge format keeps.
"""

from __future__ import annotations

from edgeport.model.graph_rewrites import rename_functions

FUNCTION_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
NOINLINE_ATTRS = ("_noinline", "_XlaMustCompile")


def has_function_calls(graph_def) -> bool:
    return any(node.op in FUNCTION_CALL_OPS for node in graph_def.node)


def clear_noinline(graph_def) -> int:
    """In place: drop the marks that keep functions from inlining; returns how many functions had them.

    Each such function is renamed (`<name>_inlinable`, every reference updated): the original definition is
    already registered with TensorFlow under its name, and a changed one may not take that name.
    """
    renamed = {}
    for function in graph_def.library.function:
        marked = [key for key in NOINLINE_ATTRS if key in function.attr]
        for key in marked:
            del function.attr[key]
        if marked:
            renamed[function.signature.name] = f"{function.signature.name}_inlinable"
    for nodes in [graph_def.node, *(function.node_def for function in graph_def.library.function)]:
        for node in nodes:
            if node.op in FUNCTION_CALL_OPS:
                for key in NOINLINE_ATTRS:
                    if key in node.attr:
                        del node.attr[key]
    rename_functions(graph_def, renamed)
    return len(renamed)
