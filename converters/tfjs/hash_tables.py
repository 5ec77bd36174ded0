"""Hash tables: a frozen graph reads each table through a resource placeholder (TF2) or a HashTableV2 node
whose initializer the freeze left behind (TF1); TF.js needs the table.

Each table's contents are exported from the loaded model's captured table (edgeport.model.lookup_tables),
the placeholder becomes a `HashTableV2` node, and an initializer graph (model.json `modelInitializer`) creates the table
under the same node name and imports the keys and values. TF.js runs the initializer before the first
`executeAsync`, and the main graph's HashTableV2 node then resolves to the filled table.
"""

from __future__ import annotations

from edgeport.errors import ConversionError
from edgeport.model.graph_rewrites import unique_name
from edgeport.model.lookup_tables import (
    TABLE_FINDERS,
    TableContents,
    placeholders_to_tables,
    table_placeholders,
)


def materialize_tables(graph_def, model) -> tuple[TableContents, ...]:
    """Turn every table placeholder into a HashTableV2 node; returns what the initializer must import.

    TF.js's table lookup returns its result flattened to 1-D, so each lookup is followed by a Reshape to
    its keys' shape.
    """
    placeholders = table_placeholders(graph_def)
    if not placeholders:
        return ()
    contents = model.tables
    tables = []
    for name, readers in sorted(placeholders.items()):
        table = contents.get(name)
        if table is None:
            raise ConversionError(
                f"tfjs: cannot read the table behind resource input {name} (the signature does not capture it, "
                "or it is only sized, never looked up)"
            )
        tables.append(table)
        for reader in readers:
            if reader.op in TABLE_FINDERS:
                _reshape_to_keys(graph_def, reader)
    placeholders_to_tables(graph_def, tables)
    return tuple(tables)


def _reshape_to_keys(graph_def, find) -> None:
    """Readers of `find` read Reshape(find, Shape(keys)) instead: the lookup's result in its keys' shape."""
    taken = {n.name for n in graph_def.node}
    shape = graph_def.node.add(name=unique_name(f"{find.name}/keys_shape", taken), op="Shape")
    shape.input.append(find.input[1])
    shape.attr["T"].type = find.attr["Tin"].type
    shape.attr["out_type"].type = 3
    reshape = graph_def.node.add(name=unique_name(f"{find.name}/in_keys_shape", taken), op="Reshape")
    reshape.input.extend([find.name, shape.name])
    reshape.attr["T"].type = find.attr["Tout"].type
    reshape.attr["Tshape"].type = 3
    for node in graph_def.node:
        if node is reshape:
            continue
        for i, name in enumerate(node.input):
            if name in (find.name, f"{find.name}:0"):
                node.input[i] = reshape.name


def initializer_graph(tables: tuple[TableContents, ...], taken_names: set[str]):
    """A GraphDef that creates and fills every table; its constants get names unique in the whole model."""
    from tensorflow.core.framework import graph_pb2
    from tensorflow.python.framework import tensor_util

    graph = graph_pb2.GraphDef()
    for table in tables:
        created = graph.node.add(name=table.node, op="HashTableV2")
        created.attr["key_dtype"].type = table.key_dtype
        created.attr["value_dtype"].type = table.value_dtype
        created.attr["shared_name"].s = table.node.encode()
        inputs = [table.node]
        for label, value, dtype in (("keys", table.keys, table.key_dtype), ("values", table.values, table.value_dtype)):
            name = unique_name(f"{table.node}/initializer/{label}", taken_names)
            const = graph.node.add(name=name, op="Const")
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value))
            const.attr["dtype"].type = dtype
            inputs.append(name)
        imported = graph.node.add(
            name=unique_name(f"{table.node}/initializer/import", taken_names), op="LookupTableImportV2"
        )
        imported.input.extend(inputs)
        imported.attr["Tin"].type = table.key_dtype
        imported.attr["Tout"].type = table.value_dtype
    graph.versions.producer = 1
    return graph
