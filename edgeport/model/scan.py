"""The pre-load scan: which ops of a SavedModel touch files, writers, Python or code TensorFlow does not know.

A SavedModel is a program, and loading it already runs some of it (`tf.saved_model.load` runs resource
initializers, the v1 loader runs the restore and init ops). So this reads `saved_model.pb` as a protobuf and
nothing else: every MetaGraph's top-level graph (the v1 path's graph) and every function of its library (the
bodies of While/If/Case/PartitionedCall included: they are library functions too). TensorFlow is imported only
to ask its op registry whether an op exists; nothing is loaded or executed.

The SavedModel's own saver is not a finding: the checkpoint ops (SaveV2, MergeV2Checkpoints, RestoreV2, ...)
in the nodes the MetaGraph's `saver_def` names (and what they take as inputs), and in the functions only those
nodes call (TF2's `__inference__traced_save_*` / `__inference__traced_restore_*`). Anything else there is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TOP_LEVEL = "the top-level graph"

FILE_SYSTEM = "file system"
WRITER = "checkpoint/summary writer"
DATASET = "dataset reader"
PRINT_TO_FILE = "print to file"
DEBUG = "debug op"
IMMUTABLE_CONST = "ImmutableConst"
PY_FUNC = "py_func"
NETWORK = "network"
UNKNOWN = "unknown op"

FAMILIES = (FILE_SYSTEM, WRITER, DATASET, PRINT_TO_FILE, DEBUG, IMMUTABLE_CONST, PY_FUNC, NETWORK, UNKNOWN)
_LABELS = {  # "MODEL runs <label>: ..."
    FILE_SYSTEM: "file-system ops",
    WRITER: "checkpoint/summary writer ops",
    DATASET: "dataset reader ops",
    PRINT_TO_FILE: "print-to-file ops",
    DEBUG: "debug ops",
    IMMUTABLE_CONST: "ImmutableConst (memory-maps a file)",
    PY_FUNC: "py_func ops (Python code)",
    NETWORK: "network ops",
    UNKNOWN: "ops TensorFlow does not know (a custom op library)",
}

_OPS = {
    FILE_SYSTEM: (
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "FileSystemSetConfiguration",
        "Skipgram",  # reads its corpus file
        "GenerateVocabRemapping",  # reads two vocabulary files
        "LoadAndRemapMatrix",  # reads a checkpoint
        "RestoreV2",
        "Restore",
        "RestoreSlice",
        "DTensorRestoreV2",
        "SaveDataset",
        "SaveDatasetV2",
        "DistributedSave",
        "DatasetToTFRecord",
        "ExperimentalDatasetToTFRecord",
        "CacheDataset",  # a file cache unless the filename is empty: not known before it runs
        "CacheDatasetV2",
        "SnapshotDataset",
        "SnapshotDatasetV2",
    ),
    WRITER: (
        "SaveV2",
        "Save",
        "SaveSlices",
        "MergeV2Checkpoints",
        "CalibrationStatisticsSaver",
        "SummaryWriter",
        "CreateSummaryFileWriter",
        "CreateSummaryDbWriter",
        "WriteSummary",
        "WriteScalarSummary",
        "WriteHistogramSummary",
        "WriteImageSummary",
        "WriteAudioSummary",
        "WriteGraphSummary",
        "WriteRawProtoSummary",
        "ImportEvent",
        "FlushSummaryWriter",
        "CloseSummaryWriter",
        "StatsAggregatorSetSummaryWriter",
    ),
    DATASET: (
        "TFRecordDataset",
        "TFRecordDatasetV2",
        "TextLineDataset",
        "FixedLengthRecordDataset",
        "FixedLengthRecordDatasetV2",
        "CSVDataset",
        "CSVDatasetV2",
        "ExperimentalCSVDataset",
        "LMDBDataset",
        "ExperimentalLMDBDataset",
        "SqlDataset",
        "ExperimentalSqlDataset",
        "MatchingFilesDataset",
        "ExperimentalMatchingFilesDataset",
        "LoadDataset",
        "SnapshotDatasetReader",
        "SnapshotNestedDatasetReader",
        "SnapshotChunkDataset",
        "ListSnapshotChunksDataset",
        "TFRecordReader",
        "TFRecordReaderV2",
        "TextLineReader",
        "TextLineReaderV2",
        "FixedLengthRecordReader",
        "FixedLengthRecordReaderV2",
        "WholeFileReader",
        "WholeFileReaderV2",
        "LMDBReader",
        "RecordInput",
    ),
    DEBUG: (
        "DebugIdentity",
        "DebugIdentityV2",
        "DebugIdentityV3",
        "DebugNanCount",
        "DebugNumericSummary",
        "DebugNumericSummaryV2",
        "DumpTensor",
    ),
    IMMUTABLE_CONST: ("ImmutableConst",),
    PY_FUNC: ("PyFunc", "PyFuncStateless", "EagerPyFunc"),
    NETWORK: (
        "DataServiceDataset",
        "DataServiceDatasetV2",
        "DataServiceDatasetV3",
        "DataServiceDatasetV4",
        "RegisterDataset",
        "RegisterDatasetV2",
        "RpcClient",
        "RpcCall",
        "RpcServer",
        "RpcServerStart",
        "RpcServerRegister",
    ),
}
FAMILY_OF = {op: family for family, ops in _OPS.items() for op in ops}
# The SavedModel's own saver writes and reads its variables/ folder with these: allowed in the saver's scope only.
SAVER_OPS = frozenset({"SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints", "RestoreV2", "Restore", "RestoreSlice"})
# Ops that read a file only when an attribute names one, or when their filename is baked into the graph.
_TEXT_FILE_TABLES = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
_PROTO_OPS = frozenset({"EncodeProto", "DecodeProtoV2"})


@dataclass(frozen=True)
class ScanFinding:
    op: str
    family: str  # one of FAMILIES
    where: str  # the function the node sits in, or TOP_LEVEL
    node: str

    def describe(self) -> str:
        return f"{self.op} in {self.where} (node {self.node})"


@dataclass(frozen=True)
class ScanResult:
    findings: tuple[ScanFinding, ...] = ()
    nodes: int = 0  # how many nodes were read (top-level graphs and function bodies)
    functions: int = 0

    @property
    def clean(self) -> bool:
        return not self.findings

    def by_family(self) -> dict[str, list[ScanFinding]]:
        grouped: dict[str, list[ScanFinding]] = {}
        for finding in self.findings:
            grouped.setdefault(finding.family, []).append(finding)
        return {family: grouped[family] for family in FAMILIES if family in grouped}

    def summary(self, limit: int = 8) -> str:
        """`file-system ops: WriteFile in f (node n), ...; py_func ops (Python code): ...`, at most `limit` ops."""
        parts, shown = [], 0
        for family, findings in self.by_family().items():
            listed = findings[: max(limit - shown, 0)]
            shown += len(listed)
            if listed:
                parts.append(f"{_LABELS[family]}: {', '.join(f.describe() for f in listed)}")
        hidden = len(self.findings) - shown
        return "; ".join(parts) + (f"; and {hidden} more (`edgeport inspect` lists them all)" if hidden else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "clean": self.clean,
            "nodes": self.nodes,
            "functions": self.functions,
            "findings": [{"op": f.op, "family": f.family, "where": f.where, "node": f.node} for f in self.findings],
        }


def refusal(model: Path | str, result: ScanResult) -> str:
    """The one line `convert`, `check` and `bench` stop with when the scan found something and no trust was given."""
    return (
        f"{model} runs {result.summary()}; edgeport does not run model code that touches files, writers, Python "
        "or unknown ops; pass --trust-model (config: trust_model = true) to run it anyway"
    )


def trust_note(result: ScanResult) -> str:
    """What the report says of a flagged model run with --trust-model."""
    return f"run with --trust-model although the pre-load scan found {result.summary()}"


def scan_saved_model(path: Path) -> ScanResult:
    """Scan `path`/saved_model.pb without loading the model (see the module docstring)."""
    from edgeport.model.savedmodel import read_saved_model_proto

    return scan_proto(read_saved_model_proto(Path(path)))


def scan_proto(proto) -> ScanResult:
    """Scan a `saved_model_pb2.SavedModel`: every MetaGraph, its top-level graph and every library function."""
    findings: dict[ScanFinding, None] = {}  # ordered, without the repeats of a function two MetaGraphs share
    nodes = functions = 0
    known = _OpRegistry()
    for meta in proto.meta_graphs:
        graph = meta.graph_def
        library = {function.signature.name: function for function in graph.library.function}
        saver_nodes, saver_functions = _saver_scope(meta.saver_def, graph.node, library)
        assets = _asset_nodes(meta)
        bodies: list[tuple[str, Any, frozenset[str]]] = [(TOP_LEVEL, graph.node, saver_nodes)]
        bodies += [(name, function.node_def, frozenset()) for name, function in library.items()]
        for where, body, saver_scope in bodies:
            nodes += len(body)
            in_saver = where in saver_functions
            for node, family in _flagged(body, library, known, assets if where == TOP_LEVEL else frozenset()):
                if node.op in SAVER_OPS and (in_saver or node.name in saver_scope):
                    continue
                findings[ScanFinding(op=node.op, family=family, where=where, node=node.name)] = None
        functions += len(library)
    return ScanResult(findings=tuple(findings), nodes=nodes, functions=functions)


class _OpRegistry:
    """Whether TensorFlow knows an op: its op registry, asked once per op name (this imports, never runs)."""

    def __init__(self):
        self._known: dict[str, bool] = {}

    def __contains__(self, op: str) -> bool:
        if op not in self._known:
            from edgeport.model.tf_quiet import import_tensorflow

            import_tensorflow()
            from tensorflow.python.framework import op_def_registry

            self._known[op] = op_def_registry.get(op) is not None
        return self._known[op]


def _flagged(
    body: Iterable, library: dict[str, Any], known: _OpRegistry, assets: frozenset[str]
) -> Iterator[tuple[Any, str]]:
    body = list(body)
    consts = {node.name for node in body if node.op == "Const" and node.name not in assets}
    for node in body:
        family = FAMILY_OF.get(node.op) or _conditional_family(node, consts)
        if family:
            yield node, family
        elif node.op not in library and node.op not in known:  # a node may call a library function by name
            yield node, UNKNOWN


def _conditional_family(node, consts: set[str]) -> str | None:
    if node.op == "PrintV2" and _string_attr(node, "output_stream").startswith(b"file://"):
        return PRINT_TO_FILE
    if node.op in _PROTO_OPS and _string_attr(node, "descriptor_source") not in (b"", b"local://"):
        return FILE_SYSTEM  # reads a FileDescriptorSet from that path
    if node.op == "FixedUnigramCandidateSampler" and _string_attr(node, "vocab_file"):
        return FILE_SYSTEM
    if node.op in _TEXT_FILE_TABLES and len(node.input) > 1 and _node_name(node.input[1]) in consts:
        return FILE_SYSTEM  # a path baked into the graph; a vocabulary among the SavedModel's assets is an argument
    return None


def _asset_nodes(meta) -> frozenset[str]:
    """The top-level nodes holding an asset's path (the v1 loader feeds them the asset's place in assets/)."""
    from tensorflow.core.protobuf import meta_graph_pb2

    names = [asset.tensor_info.name for asset in meta.asset_file_def]
    for key in ("saved_model_assets", "asset_filepaths"):  # TF1 Builder graphs: collections, not asset_file_def
        if key not in meta.collection_def:
            continue
        collection = meta.collection_def[key]
        names += collection.node_list.value
        for packed in collection.any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            if packed.Unpack(asset):
                names.append(asset.tensor_info.name)
    return frozenset(_node_name(name) for name in names)


def _string_attr(node, key: str) -> bytes:
    value = node.attr.get(key)  # never node.attr[key]: that would add the key to the proto
    return value.s if value is not None else b""


def _node_name(tensor: str) -> str:
    """`^name`, `name:0` (graph) or `name:output:0` (function body) -> `name`."""
    return tensor.lstrip("^").split(":")[0]


def _called(node) -> Iterator[str]:
    """The library functions a node calls: `f` of a PartitionedCall, While's cond/body, If's branches, ..."""
    yield node.op
    for value in node.attr.values():
        if value.func.name:
            yield value.func.name
        for function in value.list.func:
            yield function.name


def _closure(start: Iterable[str], neighbours) -> set[str]:
    """Every name reachable from `start` through `neighbours(name)`, `start` included."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [n for n in neighbours(name) if n not in seen]
    return seen


def _reach(start: Iterable[str], library: dict[str, Any]) -> set[str]:
    return _closure(
        (name for name in start if name in library),
        lambda name: [f for node in library[name].node_def for f in _called(node) if f in library],
    )


def _saver_scope(saver_def, graph_nodes, library: dict[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    """(top-level nodes of the saver, functions only the saver calls), from the MetaGraph's saver_def."""
    roots = [
        _node_name(name)
        for name in (saver_def.save_tensor_name, saver_def.restore_op_name, saver_def.filename_tensor_name)
        if name
    ]
    by_name = {node.name: node for node in graph_nodes}
    scope = _closure(
        (root for root in roots if root in by_name),
        lambda name: [_node_name(i) for i in by_name[name].input if _node_name(i) in by_name],
    )
    saver_calls = _reach((f for name in scope for f in _called(by_name[name])), library)
    other_calls = [f for node in graph_nodes if node.name not in scope for f in _called(node)]
    model_calls = _reach([*other_calls, *(name for name in library if name not in saver_calls)], library)
    return frozenset(scope), frozenset(saver_calls - model_calls)
