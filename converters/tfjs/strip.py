"""Remove what only matters to TensorFlow: debug ops (checks, asserts, prints) and bookkeeping attrs."""

from __future__ import annotations

from edgeport.converters.tfjs.graph_edit import node_name

PASS_THROUGH = ("CheckNumerics", "CheckNumericsV2", "Print", "PreventGradient", "DebugIdentity", "DebugIdentityV2")
SIDE_EFFECT_ONLY = ("Assert", "PrintV2")
BOOKKEEPING_ATTRS = ("_output_shapes", "_class")


def strip_debug_ops(graph_def) -> int:
    """Pass-through debug ops become Identity; asserts and prints go, with the control edges to them."""
    count = _strip_nodes(graph_def.node)
    for function in graph_def.library.function:
        count += _strip_nodes(function.node_def)
    return count


def _strip_nodes(nodes) -> int:
    dropped = {node.name for node in nodes if node.op in SIDE_EFFECT_ONLY}
    changed = len(dropped)
    for node in nodes:
        if node.op in PASS_THROUGH:
            dtype = node.attr["T"].type
            data = [name for name in node.input if not name.startswith("^")][:1]
            control = [name for name in node.input if name.startswith("^")]
            node.op = "Identity"
            node.ClearField("attr")
            node.attr["T"].type = dtype
            del node.input[:]
            node.input.extend(data + control)
            changed += 1
        if dropped:
            kept = [name for name in node.input if not (name.startswith("^") and node_name(name) in dropped)]
            if len(kept) != len(node.input):
                del node.input[:]
                node.input.extend(kept)
    if dropped:
        kept_nodes = [node for node in nodes if node.name not in dropped]
        del nodes[:]
        nodes.extend(kept_nodes)
    return changed


def strip_bookkeeping_attrs(graph_def) -> None:
    for nodes in [graph_def.node, *(function.node_def for function in graph_def.library.function)]:
        for node in nodes:
            node.device = ""
            for key in BOOKKEEPING_ATTRS:
                if key in node.attr:
                    del node.attr[key]
