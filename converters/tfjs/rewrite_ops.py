"""Ops TF.js lacks, rewritten with ops it has, where the rewrite is exact enough for fp32.

  * Erfc(x) -> Sub(1, Erf(x)). TensorFlow's exact GELU (keras `activation="gelu"`, tf.nn.gelu with
    approximate=False) is 0.5 * x * erfc(-x / sqrt(2)); TF.js maps Erf but not Erfc. 1 - erf(x) loses
    erfc's relative precision only where erfc(x) < ~1e-7 (x > ~3.8), an absolute error below 1e-7.

Applied to the graph and to every function body (while/cond branches), only when the runtime lacks the op.
Also here: `write_loop_outputs_to_lists`, a rewrite for a TF.js wasm memory bug (see its docstring).
"""

from __future__ import annotations

from edgeport.converters.tfjs.graph_edit import unique_name

REWRITTEN = ("Erfc",)


def rewrite_missing_ops(graph_def, runtime_ops: frozenset[str]) -> int:
    """Rewrites every op of REWRITTEN the runtime cannot run; returns how many nodes were rewritten."""
    if "Erfc" in runtime_ops or "Erf" not in runtime_ops:
        return 0
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


LIST_WRITES = {"TensorListSetItem": 2, "TensorListPushBack": 1}  # op -> index of the written item input


def write_loop_outputs_to_lists(graph_def) -> int:
    """In a loop body, a TensorList write of a tensor the body also returns writes the returned tensor instead.

    TF.js runs a function body in its own executor that disposes every tensor the body does not return,
    including a tensor just written into a TensorList. On the cpu backend the list keeps the data alive
    (Identity shares the buffer); on wasm, Identity copies, so the list is left holding freed memory and
    TensorListStack fails with "Cannot read properties of undefined (reading 'backend')". Keras RNNs
    (GRU, LSTM, SimpleRNN) write the new state `h` and return `Identity(h)`: writing that Identity's output,
    a body output the executor keeps, is the same value and stays alive on every backend.
    """
    rewired = 0
    for function in graph_def.library.function:
        returned = set(function.ret.values())
        carried: dict[str, str] = {}  # item tensor -> the returned Identity output of it
        for node in function.node_def:
            data = [name for name in node.input if not name.startswith("^")]
            output = f"{node.name}:output:0"
            if node.op == "Identity" and len(data) == 1 and output in returned:
                carried.setdefault(data[0], output)
        for node in function.node_def:
            position = LIST_WRITES.get(node.op)
            if position is not None and len(node.input) > position and node.input[position] in carried:
                node.input[position] = carried[node.input[position]]
                rewired += 1
    return rewired


__all__ = ["REWRITTEN", "rewrite_missing_ops", "write_loop_outputs_to_lists"]
