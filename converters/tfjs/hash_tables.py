"""Hash tables: a frozen TF2 graph reads each table through a resource placeholder; TF.js needs the table.

Each table's contents are exported from the loaded model's captured table (no reload), the placeholder
becomes a `HashTableV2` node, and an initializer graph (model.json `modelInitializer`) creates the table
under the same node name and imports the keys and values. TF.js runs the initializer before the first
`executeAsync`, and the main graph's HashTableV2 node then resolves to the filled table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.converters.tfjs.graph_edit import node_name
from edgeport.errors import ConversionError
from edgeport.model.graph_rewrites import unique_name

TABLE_READERS = ("LookupTableFindV2", "LookupTableSizeV2", "LookupTableFind", "LookupTableSize")
DT_RESOURCE = 20


@dataclass(frozen=True)
class TableContents:
    node: str  # the HashTableV2 node name shared by the graph and the initializer
    key_dtype: int  # DataType enum
    value_dtype: int
    keys: Any  # numpy arrays
    values: Any


def table_placeholders(graph_def) -> dict[str, list]:
    """Resource placeholders read by lookup-table ops, with the readers."""
    readers: dict[str, list] = {}
    nodes = {n.name: n for n in graph_def.node}
    for node in graph_def.node:
        if node.op in TABLE_READERS and node.input:
            source = nodes.get(node_name(node.input[0]))
            while source is not None and source.op == "Identity" and source.input:  # inlined call arguments
                source = nodes.get(node_name(source.input[0]))
            if source is not None and source.op == "Placeholder" and source.attr["dtype"].type == DT_RESOURCE:
                readers.setdefault(source.name, []).append(node)
    return readers


def materialize_tables(graph_def, model) -> tuple[TableContents, ...]:
    """Turn every table placeholder into a HashTableV2 node; returns what the initializer must import."""
    placeholders = table_placeholders(graph_def)
    v1_tables = [n.name for n in graph_def.node if n.op in ("HashTableV2", "HashTable")]
    if v1_tables:
        raise ConversionError(
            f"tfjs: hash table {v1_tables[0]} lost its initializer when the graph was frozen "
            "(TF1 table); export the model with TF2 (tf.lookup.StaticHashTable) to convert it"
        )
    if not placeholders:
        return ()
    captured = _captured_tables(model)
    tables = []
    for name, readers in sorted(placeholders.items()):
        handle = captured.get(name)
        if handle is None:
            raise ConversionError(
                f"tfjs: cannot find the table behind resource input {name}; "
                "the SavedModel's signature does not capture it"
            )
        key_dtype, value_dtype = _table_dtypes(readers)
        keys, values = _export(handle, key_dtype, value_dtype)
        tables.append(TableContents(name, key_dtype, value_dtype, keys, values))
        node = next(n for n in graph_def.node if n.name == name)
        node.op = "HashTableV2"
        node.ClearField("attr")
        node.attr["key_dtype"].type = key_dtype
        node.attr["value_dtype"].type = value_dtype
        node.attr["shared_name"].s = name.encode()
    return tuple(tables)


def _captured_tables(model) -> dict[str, Any]:
    graph = model.concrete_function.graph
    return {
        internal.op.name: external
        for external, internal in zip(graph.external_captures, graph.internal_captures, strict=False)
    }


def _table_dtypes(readers) -> tuple[int, int]:
    for reader in readers:
        if reader.op.startswith("LookupTableFind"):
            return reader.attr["Tin"].type, reader.attr["Tout"].type
    raise ConversionError(
        f"tfjs: table {node_name(readers[0].input[0])} is only sized, never looked up; "
        "edgeport cannot tell its key and value types"
    )


def _export(handle, key_dtype: int, value_dtype: int):
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    keys, values = tf.raw_ops.LookupTableExportV2(
        table_handle=handle, Tkeys=tf.as_dtype(key_dtype), Tvalues=tf.as_dtype(value_dtype)
    )
    return keys.numpy(), values.numpy()


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
