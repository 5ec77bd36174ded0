"""The words a model knows: where synthetic string inputs come from.

A string input (StringLookup, TextVectorization, a hash-table lookup) does nothing useful with random bytes:
every one is out of vocabulary. The vocabulary is read from the model itself: the string keys of the lookup
tables it reads (exported once, by edgeport.model.lookup_tables, for the converters too), string constants of the shared
frozen graph (vocabularies baked in as constants) and the text files in the SavedModel's assets/ folder
(vocabulary assets, one entry per line).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DT_STRING = 7
MAX_WORDS = 512
MAX_WORD_CHARS = 64


def model_vocabulary(graph_def: Any, saved_model: Path, tables: Any = (), limit: int = MAX_WORDS) -> tuple[str, ...]:
    """`tables`: the model's lookup tables (edgeport.model.lookup_tables.TableContents); their string keys."""
    words: dict[str, None] = {}
    sources = (*_table_keys(tables), *_graph_strings(graph_def), *_asset_lines(saved_model / "assets"))
    for word in sources:
        if 0 < len(word) <= MAX_WORD_CHARS and word.isprintable():
            words.setdefault(word)
        if len(words) >= limit:
            break
    return tuple(words)


def _table_keys(tables: Any) -> list[str]:
    """String keys of every lookup table the model reads (StringLookup, StaticHashTable)."""
    keys: list[str] = []
    for table in tables:
        if table.key_dtype == DT_STRING:
            keys.extend(bytes(key).decode("utf-8", "replace") for key in table.keys.reshape(-1).tolist())
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
