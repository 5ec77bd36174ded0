"""Ops TF.js lacks, rewritten with ops it has (edgeport.model.graph_rewrites, shared with ONNX), only when
the runtime lacks the op. Also here: `write_loop_outputs_to_lists`, a rewrite for a TF.js wasm memory bug
(see its docstring).
"""

from __future__ import annotations

from edgeport.model.graph_rewrites import rewrite_complex_abs, rewrite_erfc

REWRITTEN = ("Erfc", "ComplexAbs")


def rewrite_missing_ops(graph_def, runtime_ops: frozenset[str]) -> int:
    """Rewrites every op of REWRITTEN the runtime cannot run; returns how many nodes were rewritten.

    ComplexAbs (an STFT's magnitude) is always rewritten, with its RFFT as a real DFT: TF.js's op table lists
    RFFT and ComplexAbs, but the wasm backend has no Complex kernel ("Kernel 'Complex' not registered").
    """
    count = rewrite_complex_abs(graph_def)[0]
    if "Erfc" in runtime_ops or "Erf" not in runtime_ops:
        return count
    return count + rewrite_erfc(graph_def)


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
