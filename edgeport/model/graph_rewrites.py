"""Graph rewrites that mean the same in every format, applied once to a copy of the shared frozen graph.

  * Erfc(x) -> Sub(1, Erf(x)). TensorFlow's exact GELU (keras `activation="gelu"`, tf.nn.gelu with
    approximate=False) is 0.5 * x * erfc(-x / sqrt(2)). TF.js maps Erf but not Erfc; tf2onnx has no Erfc
    handler, and ONNX has Erf (opset 9+). 1 - erf(x) loses erfc's relative precision only where
    erfc(x) < ~1e-7 (x > ~3.8), an absolute error below 1e-7.

Applied to the graph and to every function body (while/cond branches). Each converter decides whether it
needs a rewrite (the TF.js converter asks its runtime's op table) and says in its artifact how many it made.
"""

from __future__ import annotations


def unique_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_1`, `name_2`... whichever is free; the result is added to `taken`."""
    candidate, suffix = name, 1
    while candidate in taken:
        candidate, suffix = f"{name}_{suffix}", suffix + 1
    taken.add(candidate)
    return candidate


def count_ops(graph_def, op: str) -> int:
    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    return sum(node.op == op for node in nodes)


def rewrite_erfc(graph_def) -> int:
    """Every Erfc becomes 1 - Erf, in place; returns how many nodes were rewritten."""
    count = _erfc_in_graph(graph_def.node)
    for function in graph_def.library.function:
        count += _erfc_in_function(function)
    return count


def _erfc_in_graph(nodes) -> int:
    """Node N = Erfc(x) becomes N = Sub(N/one, N/erf) with N/erf = Erf(x): readers of N are unchanged."""
    names = {node.name for node in nodes}
    targets = [node for node in nodes if node.op == "Erfc"]
    for node in targets:
        one, erf = unique_name(f"{node.name}/one", names), unique_name(f"{node.name}/erf", names)
        _become_sub(nodes, node, one_name=one, erf_name=erf, one_ref=one, erf_ref=erf)
    return len(targets)


def _erfc_in_function(function) -> int:
    """As in the graph; in a function body Erfc's output is `N:y:0` and Sub's `N:z:0`, so readers follow."""
    nodes = function.node_def
    names = {node.name for node in nodes}
    targets = [node for node in nodes if node.op == "Erfc"]
    for node in targets:
        one, erf = unique_name(f"{node.name}_one", names), unique_name(f"{node.name}_erf", names)
        _become_sub(nodes, node, one_name=one, erf_name=erf, one_ref=f"{one}:output:0", erf_ref=f"{erf}:y:0")
    renamed = {f"{node.name}:y:0": f"{node.name}:z:0" for node in targets}
    if renamed:
        for node in nodes:
            for i, name in enumerate(node.input):
                if name in renamed:
                    node.input[i] = renamed[name]
        for key, value in list(function.ret.items()):
            if value in renamed:
                function.ret[key] = renamed[value]
    return len(targets)


def _become_sub(nodes, node, *, one_name: str, erf_name: str, one_ref: str, erf_ref: str) -> None:
    from tensorflow.python.framework import tensor_util

    dtype = node.attr["T"].type
    data = [name for name in node.input if not name.startswith("^")]
    control = [name for name in node.input if name.startswith("^")]
    erf = nodes.add(name=erf_name, op="Erf", device=node.device)
    erf.input.extend(data + control)
    erf.attr["T"].type = dtype
    one = nodes.add(name=one_name, op="Const", device=node.device)
    one.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(1, dtype=dtype, shape=[]))
    one.attr["dtype"].type = dtype
    if control:  # keep the constant under the same control dependencies (e.g. a TF1 loop frame) as Erf
        one.input.extend(control)
    node.op = "Sub"
    del node.input[:]
    node.input.extend([one_ref, erf_ref])
    node.ClearField("attr")
    node.attr["T"].type = dtype


def rename_functions(graph_def, renamed: dict[str, str]) -> None:
    """Rename library functions in place, and every reference to them (call `f`, While `cond`/`body`, If
    branches, Case `branches`: any func-valued attribute) in the graph and in every function body.

    An edited function must take a new name before the graph is imported again: TensorFlow keeps the first
    definition registered under a name and refuses a different one.
    """
    if not renamed:
        return
    for function in graph_def.library.function:
        function.signature.name = renamed.get(function.signature.name, function.signature.name)
    for nodes in [graph_def.node, *(function.node_def for function in graph_def.library.function)]:
        for node in nodes:
            for value in node.attr.values():
                if value.HasField("func") and value.func.name in renamed:
                    value.func.name = renamed[value.func.name]
                for func in value.list.func:
                    func.name = renamed.get(func.name, func.name)
