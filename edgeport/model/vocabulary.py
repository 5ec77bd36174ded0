"""The words a model knows: where synthetic string inputs come from.

A string input (StringLookup, TextVectorization, a hash-table lookup) does nothing useful with random bytes:
every one is out of vocabulary. The vocabulary is read from the model itself: the string keys of the lookup
tables its signature function captures (exported from the loaded tables), string constants of the shared
frozen graph (vocabularies baked in as constants) and the text files in the SavedModel's assets/ folder
(vocabulary assets, one entry per line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

MAX_WORDS = 512
MAX_WORD_CHARS = 64


def model_vocabulary(
    graph_def: Any, saved_model: Path, function: Any = None, limit: int = MAX_WORDS
) -> tuple[str, ...]:
    words: dict[str, None] = {}
    sources = (*_table_keys(function), *_graph_strings(graph_def), *_asset_lines(saved_model / "assets"))
    for word in sources:
        if 0 < len(word) <= MAX_WORD_CHARS and word.isprintable():
            words.setdefault(word)
        if len(words) >= limit:
            break
    return tuple(words)


def _table_keys(function: Any) -> list[str]:
    """String keys of every lookup table the signature function captures (StringLookup, StaticHashTable)."""
    if function is None:
        return []
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    keys: list[str] = []
    for capture in getattr(function.graph, "external_captures", ()):
        if getattr(capture, "dtype", None) != tf.resource:
            continue
        for value_dtype in (tf.int64, tf.int32, tf.float32, tf.string):
            try:
                exported, _ = tf.raw_ops.LookupTableExportV2(table_handle=capture, Tkeys=tf.string, Tvalues=value_dtype)
            except Exception:  # noqa: BLE001 - not a table, or other key/value types: try the next
                continue
            keys.extend(key.decode("utf-8", "replace") for key in exported.numpy().tolist())
            break
    return keys


def _graph_strings(graph_def: Any) -> list[str]:
    if graph_def is None:
        return []
    from tensorflow.core.framework import types_pb2

    nodes = list(graph_def.node) + [node for function in graph_def.library.function for node in function.node_def]
    found: list[str] = []
    for node in nodes:
        if node.op != "Const" or node.attr["dtype"].type != types_pb2.DT_STRING:
            continue
        values = node.attr["value"].tensor.string_val
        if len(values) < 2:  # a single string is a name or a format, not a vocabulary
            continue
        found.extend(value.decode("utf-8", "replace") for value in values)
    return found


def _asset_lines(folder: Path) -> list[str]:
    if not folder.is_dir():
        return []
    lines: list[str] = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and path.stat().st_size < 16 * 2**20:
            try:
                lines.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines())
            except UnicodeDecodeError:
                continue
    return lines
