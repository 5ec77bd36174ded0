"""Small helpers to read and edit a GraphDef in place: node lookup, consumers, constants."""

from __future__ import annotations

from collections import defaultdict


def node_name(tensor_or_input: str) -> str:
    return tensor_or_input.lstrip("^").split(":")[0]


class GraphIndex:
    """Nodes by name and, for each node, the names of the nodes that read one of its outputs."""

    def __init__(self, graph_def, protected: set[str]):
        self.graph_def = graph_def
        self.protected = protected  # fetched or fed nodes: never removed, never renamed
        self.nodes = {node.name: node for node in graph_def.node}
        self.doomed: set[str] = set()
        self.consumers: dict[str, list[str]] = defaultdict(list)
        for node in graph_def.node:
            for name in node.input:
                self.consumers[node_name(name)].append(node.name)

    def only_consumer(self, name: str):
        """The single node reading `name`, or None when it has several readers or must be kept."""
        readers = self.consumers.get(name, [])
        if len(readers) != 1 or name in self.protected:
            return None
        return self.nodes[readers[0]]

    def const_value(self, input_name: str):
        """The numpy value of a Const input (None when the input is not a constant)."""
        from tensorflow.python.framework import tensor_util

        node = self.nodes.get(node_name(input_name))
        if node is None or node.op != "Const" or input_name.startswith("^"):
            return None
        return tensor_util.MakeNdarray(node.attr["value"].tensor)

    def add_const(self, name: str, value):
        from tensorflow.python.framework import tensor_util

        name = self.unique_name(name)
        node = self.graph_def.node.add(name=name, op="Const")
        node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
        node.attr["dtype"].type = node.attr["value"].tensor.dtype
        self.nodes[name] = node
        return name

    def add_node(self, name: str, op: str, inputs: list[str]):
        name = self.unique_name(name)
        node = self.graph_def.node.add(name=name, op=op)
        node.input.extend(inputs)
        self.nodes[name] = node
        for source in inputs:
            self.consumers[node_name(source)].append(name)
        return node

    def unique_name(self, name: str) -> str:
        candidate, suffix = name, 1
        while candidate in self.nodes:
            candidate, suffix = f"{name}_{suffix}", suffix + 1
        return candidate

    def remove(self, names: set[str]) -> None:
        """Marks nodes for removal; `commit()` drops them (node references stay valid until then)."""
        self.doomed |= names

    def commit(self) -> None:
        if not self.doomed:
            return
        kept = [node for node in self.graph_def.node if node.name not in self.doomed]
        del self.graph_def.node[:]
        self.graph_def.node.extend(kept)
        self.nodes = {node.name: node for node in self.graph_def.node}
        self.doomed = set()


def drop_unused_constants(graph_def, protected: set[str]) -> None:
    used = {node_name(name) for node in graph_def.node for name in node.input}
    kept = [n for n in graph_def.node if n.op != "Const" or n.name in used or n.name in protected]
    del graph_def.node[:]
    graph_def.node.extend(kept)


def static_shapes(graph_def, tensors: set[str]) -> dict[str, list[int | None] | None]:
    """Static shapes of the named tensors (None where the rank is unknown, None dims where a dim is)."""
    import tensorflow as tf

    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
    except (ValueError, TypeError, tf.errors.OpError):
        return {}
    shapes = {}
    for name in tensors:
        shape = graph.get_tensor_by_name(name if ":" in name else f"{name}:0").shape
        shapes[name] = shape.as_list() if shape.rank is not None else None
    return shapes
