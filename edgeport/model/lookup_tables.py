"""Lookup tables in the shared frozen graph: what each table holds, and integer lookups as plain tensor ops.

A frozen TF2 graph reads each table (a Keras StringLookup/IntegerLookup layer, a tf.lookup.StaticHashTable)
through a resource placeholder; the table itself is a capture of the signature function. A TF1 graph frozen
from its v1 session reads a HashTableV2 node whose initializer the freeze left behind. `table_contents` (TF2)
and `session_table_contents` (v1) export every table's keys and values from the loaded model (no reload,
nothing re-run), for the formats that carry tables (TF.js hash tables, ONNX's CategoryMapper).

`lower_integer_lookups`: a table with integer keys and numeric values is a small constant map, and no
format's table support takes it (TFLite's hash table kernels and tf2onnx's CategoryMapper map strings to
integers and back only). Each such LookupTableFindV2 becomes

    matches = Equal(ExpandDims(keys_in, -1), KEYS)            [..., n] bool
    found   = Any(matches, -1)
    index   = ArgMax(Cast(matches, int32), -1)
    out     = SelectV2(found, GatherV2(VALUES, index, 0), default)

which every format runs and which gives exactly the table's answer (keys are unique, so at most one match).
LookupTableSizeV2 on such a table becomes a constant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgeport.model.graph_rewrites import unique_name

TABLE_FINDERS = ("LookupTableFindV2", "LookupTableFind")
TABLE_SIZERS = ("LookupTableSizeV2", "LookupTableSize")
TABLE_READERS = TABLE_FINDERS + TABLE_SIZERS
DT_RESOURCE = 20
DT_STRING = 7
_INTEGER_DTYPES = {3, 9}  # DT_INT32, DT_INT64
_NUMERIC_DTYPES = {1, 2, 3, 9, 19}  # float, double, int32, int64, half


@dataclass(frozen=True)
class TableContents:
    node: str  # the resource placeholder (or HashTableV2 node) the graph reads the table through
    key_dtype: int  # DataType enum
    value_dtype: int
    keys: Any  # numpy arrays
    values: Any


def node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


TABLE_OPS = ("HashTableV2", "HashTable")


def table_placeholders(graph_def) -> dict[str, list]:
    """The nodes lookup-table ops in the top-level graph read their table through, with the readers: a
    resource placeholder (a TF2 signature's captured table) or a HashTableV2 node (a TF1 graph's table, whose
    initializer the freeze left behind)."""
    readers: dict[str, list] = {}
    nodes = {n.name: n for n in graph_def.node}
    for node in graph_def.node:
        if node.op in TABLE_READERS and node.input:
            source = _table_source(nodes, node)
            if source is None:
                continue
            if source.op in TABLE_OPS or (source.op == "Placeholder" and source.attr["dtype"].type == DT_RESOURCE):
                readers.setdefault(source.name, []).append(node)
    return readers


def session_table_contents(graph_def, session) -> dict[str, TableContents]:
    """Every TF1 table the frozen graph reads, exported from the v1 session that initialized it."""
    import tensorflow as tf

    contents = {}
    for name, readers in sorted(table_placeholders(graph_def).items()):
        dtypes = _table_dtypes(readers)
        if dtypes is None:
            continue
        with session.graph.as_default():
            handle = session.graph.get_tensor_by_name(f"{name}:0")
            exported = tf.raw_ops.LookupTableExportV2(
                table_handle=handle, Tkeys=tf.as_dtype(dtypes[0]), Tvalues=tf.as_dtype(dtypes[1])
            )
        keys, values = session.run(exported)
        contents[name] = TableContents(name, dtypes[0], dtypes[1], keys, values)
    return contents


def table_contents(graph_def, concrete_function) -> dict[str, TableContents]:
    """Every table the graph reads through a resource placeholder, by placeholder name, exported from the
    signature function's captures. A placeholder whose table cannot be found or typed is left out."""
    captured = _captured_resources(concrete_function)
    contents = {}
    for name, readers in sorted(table_placeholders(graph_def).items()):
        handle = captured.get(name)
        dtypes = _table_dtypes(readers)
        if handle is None or dtypes is None:
            continue
        keys, values = _export(handle, *dtypes)
        contents[name] = TableContents(name, dtypes[0], dtypes[1], keys, values)
    return contents


def placeholders_to_tables(graph_def, tables) -> None:
    """Turn each table's resource placeholder into a HashTableV2 node (shared_name: the node's name), in place.

    The node stands for a table the format fills itself (TF.js's initializer graph, ONNX's CategoryMapper).
    """
    by_name = {table.node: table for table in tables}
    for node in graph_def.node:
        table = by_name.get(node.name)
        if table is None or node.op not in ("Placeholder", *TABLE_OPS):
            continue
        node.op = "HashTableV2"
        node.ClearField("attr")
        node.attr["key_dtype"].type = table.key_dtype
        node.attr["value_dtype"].type = table.value_dtype
        node.attr["shared_name"].s = node.name.encode()


def lower_integer_lookups(graph_def, contents: dict[str, TableContents]) -> int:
    """Rewrite, in place, every read of an integer-keyed numeric table as tensor ops; returns how many."""
    return lower_lookups(graph_def, contents, _INTEGER_DTYPES)


def lower_lookups(graph_def, contents: dict[str, TableContents], key_dtypes=_INTEGER_DTYPES | {DT_STRING}) -> int:
    """Rewrite, in place, every read of a numeric-valued table whose keys have one of `key_dtypes` as tensor
    ops; returns how many. String keys cost one string compare per key and element: for formats that cannot
    carry the table itself (TFLite cannot fill a table from a vocabulary file)."""
    nodes = {n.name: n for n in graph_def.node}
    taken = set(nodes)
    lowered = 0
    for node in list(graph_def.node):
        if node.op not in TABLE_READERS or not node.input:
            continue
        source = _table_source(nodes, node)
        table = contents.get(source.name) if source is not None else None
        if table is None or table.key_dtype not in key_dtypes or table.value_dtype not in _NUMERIC_DTYPES:
            continue
        if node.op in TABLE_FINDERS:
            _lower_find(graph_def, node, table, taken)
        else:
            _become_const(node, len(table.keys), 9)
        lowered += 1
    _drop_unread_tables(graph_def, contents)
    return lowered


def _drop_unread_tables(graph_def, contents: dict[str, TableContents]) -> None:
    """Table nodes no op reads any more (every lookup lowered) go: a format would try to build the table."""
    read = {node_name(name) for node in graph_def.node for name in node.input}
    doomed = {name for name in contents if name not in read}
    kept = [node for node in graph_def.node if node.name not in doomed]
    if len(kept) != len(graph_def.node):
        del graph_def.node[:]
        graph_def.node.extend(kept)


def _lower_find(graph_def, node, table: TableContents, taken: set[str]) -> None:
    """Node N = LookupTableFindV2(table, keys, default) becomes N = SelectV2(found, gathered, default)."""
    from tensorflow.python.framework import tensor_util

    def add(suffix: str, op: str, inputs: list[str], **attrs) -> str:
        new = graph_def.node.add(name=unique_name(f"{node.name}/{suffix}", taken), op=op, device=node.device)
        new.input.extend(inputs)
        for key, value in attrs.items():
            if isinstance(value, bool):
                new.attr[key].b = value
            elif isinstance(value, int):
                new.attr[key].type = value
            else:
                new.attr[key].tensor.CopyFrom(value)
        return new.name

    def const(suffix: str, value, dtype: int) -> str:
        return add(suffix, "Const", [], dtype=dtype, value=tensor_util.make_tensor_proto(value, dtype=dtype))

    data = [name for name in node.input if not name.startswith("^")]
    control = [name for name in node.input if name.startswith("^")]
    keys_in, default = data[1], data[2]
    key_dtype, value_dtype = table.key_dtype, table.value_dtype
    table_keys = const("keys", table.keys, key_dtype)
    table_values = const("values", table.values, value_dtype)
    minus_one = const("last_axis", -1, 3)
    zero = const("first_axis", 0, 3)
    expanded = add("expand", "ExpandDims", [keys_in, minus_one], T=key_dtype, Tdim=3)
    matches = add("matches", "Equal", [expanded, table_keys], T=key_dtype, incompatible_shape_error=True)
    found = add("found", "Any", [matches, minus_one], Tidx=3, keep_dims=False)
    as_int = add("as_int", "Cast", [matches], SrcT=10, DstT=3, Truncate=False)
    index = add("index", "ArgMax", [as_int, minus_one], T=3, Tidx=3, output_type=3)
    gathered = add("gathered", "GatherV2", [table_values, index, zero], Tparams=value_dtype, Tindices=3, Taxis=3)
    del node.input[:]
    node.input.extend([found, gathered, default, *control])
    node.op = "SelectV2"
    node.ClearField("attr")
    node.attr["T"].type = value_dtype


def _become_const(node, value: int, dtype: int) -> None:
    from tensorflow.python.framework import tensor_util

    control = [name for name in node.input if name.startswith("^")]
    del node.input[:]
    node.input.extend(control)
    node.op = "Const"
    node.ClearField("attr")
    node.attr["dtype"].type = dtype
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(value, dtype=dtype))


def _table_source(nodes: dict, reader):
    source = nodes.get(node_name(reader.input[0]))
    while source is not None and source.op == "Identity" and source.input:  # inlined call arguments
        source = nodes.get(node_name(source.input[0]))
    return source


def _captured_resources(concrete_function) -> dict[str, Any]:
    graph = concrete_function.graph
    return {
        internal.op.name: external
        for external, internal in zip(graph.external_captures, graph.internal_captures, strict=False)
    }


def _table_dtypes(readers) -> tuple[int, int] | None:
    for reader in readers:
        if reader.op in TABLE_FINDERS:
            return reader.attr["Tin"].type, reader.attr["Tout"].type
    return None


def _export(handle, key_dtype: int, value_dtype: int):
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    keys, values = tf.raw_ops.LookupTableExportV2(
        table_handle=handle, Tkeys=tf.as_dtype(key_dtype), Tvalues=tf.as_dtype(value_dtype)
    )
    return keys.numpy(), values.numpy()
