"""The pre-load scan: which ops of a SavedModel may touch anything outside the process (files, writers, the
network, Python), run code TensorFlow does not know, or read a file from outside the model folder.

A SavedModel is a program, and loading it already runs some of it (`tf.saved_model.load` runs resource
initializers and, for a TF1 graph, the saver's restore op; the v1 session runs the init op). So this reads
`saved_model.pb` as a protobuf, and the names under `assets/`, and nothing else: every MetaGraph's top-level
graph, every function of its library (While/If/Case bodies, dataset functions, ...), and every graph serialized
into a constant a `DatasetFromGraph` runs. TensorFlow is imported only to ask its op registry about op names.

The rule is an allow-list: a stateful op (the registry's `is_stateful`) is a finding unless it is on
`ALLOWED_STATEFUL`, the ops reviewed as touching nothing outside the process (variables, hash tables, random
numbers, TensorArrays, in-memory datasets and queues, control flow, Assert). Stateless ops that read files
anyway (ReadFile, MatchingFiles, ImmutableConst, ...) are on a deny-list (`FAMILY_OF`), and ops that read a file
only when an attribute or input names one are judged by it (PrintV2, DecodeProtoV2, text-file tables).

Checkpoint ops: no loader edgeport uses runs the saver's save path, and edgeport's v1 session restores the
variables itself from `variables/` (model/savedmodel.py); `tf.saved_model.load` runs a TF1 graph's restore op
with the path `variables/variables` fed to the saver's filename tensor. So checkpoint ops are:
- in the saver's restore op (the MetaGraph's `saver_def`, and functions only it calls): reads only, each from
  the filename tensor the loader feeds; a write there, or a read from any other path, is a finding;
- in the saver's save path, or anywhere in the top-level graph that nothing a loader runs depends on (a TF1
  training script's own `tf.train.Saver`): never run, not a finding;
- anywhere else (a function the model runs, a node a signature or init op depends on): a finding.

A text-file lookup table must read an asset of the MetaGraph: its filename traced (through Identity, a
variable assigned the asset's path, function arguments and their call sites, the object graph's bound inputs)
to an asset tensor; and every asset (`asset_file_def`, and every entry of `assets/`) must resolve, symlinks
followed, inside the model folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
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
EMBEDDED_GRAPH = "embedded graph"
ASSET_OUTSIDE = "asset outside the model"
UNREVIEWED = "unreviewed stateful op"
UNKNOWN = "unknown op"

FAMILIES = (
    FILE_SYSTEM,
    WRITER,
    DATASET,
    PRINT_TO_FILE,
    DEBUG,
    IMMUTABLE_CONST,
    PY_FUNC,
    NETWORK,
    EMBEDDED_GRAPH,
    ASSET_OUTSIDE,
    UNREVIEWED,
    UNKNOWN,
)
_LABELS = {  # "MODEL runs <label>: ..."
    FILE_SYSTEM: "file-system ops",
    WRITER: "checkpoint/summary writer ops",
    DATASET: "dataset reader ops",
    PRINT_TO_FILE: "print-to-file ops",
    DEBUG: "debug ops",
    IMMUTABLE_CONST: "ImmutableConst (memory-maps a file)",
    PY_FUNC: "py_func ops (Python code)",
    NETWORK: "network ops",
    EMBEDDED_GRAPH: "serialized graphs the scan cannot read",
    ASSET_OUTSIDE: "assets outside the model folder",
    UNREVIEWED: "stateful ops not on the scan's reviewed list",
    UNKNOWN: "ops TensorFlow does not know (a custom op library)",
}

_CHECKPOINT_READS = ("RestoreV2", "Restore", "RestoreSlice", "DTensorRestoreV2")
_CHECKPOINT_WRITES = ("SaveV2", "Save", "SaveSlices", "MergeV2Checkpoints")
_OPS = {
    FILE_SYSTEM: (
        "ReadFile",
        "WriteFile",
        "MatchingFiles",
        "FileSystemSetConfiguration",
        "Skipgram",  # reads its corpus file
        "GenerateVocabRemapping",  # reads two vocabulary files
        "LoadAndRemapMatrix",  # reads a checkpoint
        *_CHECKPOINT_READS,
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
        *_CHECKPOINT_WRITES,
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
        "DebugGradientIdentity",
        "DebugGradientRefIdentity",
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
        "RemoteCall",
    ),
}
FAMILY_OF = {op: family for family, ops in _OPS.items() for op in ops}
CHECKPOINT_OPS = frozenset({*_CHECKPOINT_READS, *_CHECKPOINT_WRITES})
SAVER_OPS = CHECKPOINT_OPS  # the name earlier callers know
# Ops whose file, if any, is named by an attribute or an input: judged by it (_conditional_family).
_TEXT_FILE_TABLES = frozenset({"InitializeTableFromTextFile", "InitializeTableFromTextFileV2"})
_PROTO_OPS = frozenset({"EncodeProto", "DecodeProtoV2"})
_EMBEDDED_GRAPH_OPS = frozenset({"DatasetFromGraph"})  # input 0: a serialized GraphDef the op runs
_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})  # input i is argument i of attr `f`
_PASS_THROUGH = frozenset({"Identity", "Snapshot", "StopGradient"})  # a filename traced through these
_MAX_EMBEDDING_DEPTH = 4  # graphs serialized inside graphs inside graphs: deeper ones are findings

# Stateful ops reviewed as touching nothing outside the process: built from TensorFlow 2.21's op registry
# (every op with is_stateful), op by op. Left out on purpose: readers, writers and file datasets (above),
# collectives, NCCL, Send/Recv, TPU/XLA host transfers and compilation, RemoteCall, session-less test ops:
# they reach other devices, hosts or files, and a SavedModel for the edge has no use for them.
_ALLOWED_STATEFUL_GROUPS = {
    "variables": (
        "VarHandleOp",
        "_VarHandlesOp",
        "VariableV2",
        "Variable",
        "TemporaryVariable",
        "ReadVariableOp",
        "_ReadVariablesOp",
        "ReadVariableXlaSplitND",
        "AssignVariableOp",
        "AssignVariableXlaConcatND",
        "AssignAddVariableOp",
        "AssignSubVariableOp",
        "VarIsInitializedOp",
        "VariableShape",
        "DestroyResourceOp",
        "DisableCopyOnRead",
        "ResourceGather",
        "ResourceGatherNd",
        "ResourceScatterAdd",
        "ResourceScatterDiv",
        "ResourceScatterMax",
        "ResourceScatterMin",
        "ResourceScatterMul",
        "ResourceScatterNdAdd",
        "ResourceScatterNdMax",
        "ResourceScatterNdMin",
        "ResourceScatterNdSub",
        "ResourceScatterNdUpdate",
        "ResourceScatterSub",
        "ResourceScatterUpdate",
        "ResourceStridedSliceAssign",
        "ResourceCountUpTo",
        "MakeWeakResourceHandle",
        "IsResourceHandleRefCounting",
    ),
    "optimizers (training graphs keep them)": (
        "ResourceApplyAdaMax",
        "ResourceApplyAdadelta",
        "ResourceApplyAdagrad",
        "ResourceApplyAdagradDA",
        "ResourceApplyAdagradV2",
        "ResourceApplyAdam",
        "ResourceApplyAdamWithAmsgrad",
        "ResourceApplyAddSign",
        "ResourceApplyCenteredRMSProp",
        "ResourceApplyFtrl",
        "ResourceApplyFtrlV2",
        "ResourceApplyGradientDescent",
        "ResourceApplyKerasMomentum",
        "ResourceApplyMomentum",
        "ResourceApplyPowerSign",
        "ResourceApplyProximalAdagrad",
        "ResourceApplyProximalGradientDescent",
        "ResourceApplyRMSProp",
        "ResourceSparseApplyAdadelta",
        "ResourceSparseApplyAdagrad",
        "ResourceSparseApplyAdagradDA",
        "ResourceSparseApplyAdagradV2",
        "ResourceSparseApplyCenteredRMSProp",
        "ResourceSparseApplyFtrl",
        "ResourceSparseApplyFtrlV2",
        "ResourceSparseApplyKerasMomentum",
        "ResourceSparseApplyMomentum",
        "ResourceSparseApplyProximalAdagrad",
        "ResourceSparseApplyProximalGradientDescent",
        "ResourceSparseApplyRMSProp",
    ),
    "hash tables (a text-file initializer is judged by its filename)": (
        "HashTable",
        "HashTableV2",
        "MutableHashTable",
        "MutableHashTableV2",
        "MutableHashTableOfTensors",
        "MutableHashTableOfTensorsV2",
        "MutableDenseHashTable",
        "MutableDenseHashTableV2",
        "AnonymousHashTable",
        "AnonymousMutableHashTable",
        "AnonymousMutableHashTableOfTensors",
        "AnonymousMutableDenseHashTable",
        "InitializeTableV2",
        "InitializeTableFromDataset",
        "LookupTableFindV2",
        "LookupTableInsertV2",
        "LookupTableRemoveV2",
        "LookupTableImportV2",
        "LookupTableExportV2",
        "LookupTableSizeV2",
    ),
    "random numbers": (
        "RandomUniform",
        "RandomUniformInt",
        "RandomStandardNormal",
        "TruncatedNormal",
        "ParameterizedTruncatedNormal",
        "RandomGamma",
        "RandomPoisson",
        "RandomPoissonV2",
        "RandomShuffle",
        "RandomCrop",
        "Multinomial",
        "StatefulRandomBinomial",
        "StatefulStandardNormal",
        "StatefulStandardNormalV2",
        "StatefulTruncatedNormal",
        "StatefulUniform",
        "StatefulUniformFullInt",
        "StatefulUniformInt",
        "RngReadAndSkip",
        "RngSkip",
        "StatelessRandomGetAlg",
        "NonDeterministicInts",
        "AnonymousRandomSeedGenerator",
        "AnonymousSeedGenerator",
        "DummySeedGenerator",
        "DeleteRandomSeedGenerator",
        "DeleteSeedGenerator",
        "SampleDistortedBoundingBox",
        "SampleDistortedBoundingBoxV2",
        "AllCandidateSampler",
        "LogUniformCandidateSampler",
        "LearnedUnigramCandidateSampler",
        "ThreadUnsafeUnigramCandidateSampler",
        "UniformCandidateSampler",
    ),
    "TensorArrays and stacks": (
        "TensorArray",
        "TensorArrayV2",
        "TensorArrayV3",
        "TensorArrayReadV3",
        "TensorArrayWriteV3",
        "TensorArrayGatherV3",
        "TensorArrayScatterV3",
        "TensorArrayConcatV3",
        "TensorArraySplitV3",
        "TensorArraySizeV3",
        "TensorArrayCloseV3",
        "TensorArrayGrad",
        "TensorArrayGradV2",
        "TensorArrayGradV3",
        "TensorArrayGradWithShape",
        "Stack",
        "StackV2",
        "StackPushV2",
        "StackPopV2",
        "StackCloseV2",
    ),
    "control flow and calls (their functions are scanned)": (
        "If",
        "While",
        "Case",
        "StatefulPartitionedCall",
        "_Arg",
        "_Retval",
        "_DeviceArg",
        "_DeviceRetval",
    ),
    "checks, printing to stderr, bookkeeping": (
        "Assert",
        "CheckNumerics",
        "CheckNumericsV2",
        "Print",  # the v1 Print logs to stderr
        "PrintV2",  # to a file only with output_stream file://..., judged by it
        "Timestamp",
        "GuaranteeConst",
        "Empty",
        "DeepCopy",
        "_ParallelConcatStart",
        "GraphDefVersion",
        "IsTensorFloat32Enabled",
        "DeviceIndex",
        "DevicePlacementOp",
        "MutexV2",
        "MutexLock",
        "ConsumeMutexLock",
        "GetSessionHandle",
        "GetSessionHandleV2",
        "GetSessionTensor",
        "DeleteSessionTensor",
        "AddSparseToTensorsMap",
        "AddManySparseToTensorsMap",
        "TakeManySparseFromTensorsMap",
        "CudnnRNN",  # Keras 2 recurrent layers' GPU twins
        "CudnnRNNV2",
        "CudnnRNNV3",
        "CudnnRNNBackprop",
        "CudnnRNNBackpropV2",
        "CudnnRNNBackpropV3",
        "XlaCallModule",  # a jax2tf StableHLO module: calls back only into its function_list (scanned)
    ),
    "in-memory datasets and iterators (file datasets are above; dataset functions are scanned)": (
        "RangeDataset",
        "TensorDataset",
        "TensorSliceDataset",
        "SparseTensorSliceDataset",
        "ListDataset",
        "RandomDataset",
        "RandomDatasetV2",
        "ExperimentalRandomDataset",
        "GeneratorDataset",
        "GroupByReducerDataset",
        "ExperimentalGroupByReducerDataset",
        "ShuffleDatasetV2",
        "ShuffleDatasetV3",
        "ShuffleAndRepeatDatasetV2",
        "GlobalShuffleDataset",
        "ThreadPoolDataset",
        "ThreadPoolHandle",
        "ExperimentalThreadPoolDataset",
        "ExperimentalThreadPoolHandle",
        "AnonymousMemoryCache",
        "DummyMemoryCache",
        "DeleteMemoryCache",
        "DatasetToSingleElement",
        "ReduceDataset",
        "AnonymousIterator",
        "AnonymousIteratorV2",
        "AnonymousIteratorV3",
        "Iterator",
        "IteratorV2",
        "OneShotIterator",
        "MakeIterator",
        "DeleteIterator",
        "IteratorGetNext",
        "IteratorGetNextSync",
        "IteratorGetNextAsOptional",
        "IteratorToStringHandle",
        "IteratorFromStringHandle",
        "IteratorFromStringHandleV2",
        "IteratorGetDevice",
        "ExperimentalIteratorGetDevice",
        "IteratorGetModelProto",
        "SerializeIterator",
        "DeserializeIterator",
        "AnonymousMultiDeviceIterator",
        "AnonymousMultiDeviceIteratorV3",
        "MultiDeviceIterator",
        "MultiDeviceIteratorInit",
        "MultiDeviceIteratorGetNextFromShard",
        "MultiDeviceIteratorToStringHandle",
        "MultiDeviceIteratorFromStringHandle",
        "DeleteMultiDeviceIterator",
        "DummyIterationCounter",
        "GlobalIterId",
    ),
    "in-memory queues, staging areas, barriers and accumulators": (
        "FIFOQueue",
        "FIFOQueueV2",
        "PaddingFIFOQueue",
        "PaddingFIFOQueueV2",
        "PriorityQueue",
        "PriorityQueueV2",
        "RandomShuffleQueue",
        "RandomShuffleQueueV2",
        "FakeQueue",
        "QueueEnqueueV2",
        "QueueEnqueueManyV2",
        "QueueDequeueV2",
        "QueueDequeueManyV2",
        "QueueDequeueUpToV2",
        "QueueCloseV2",
        "QueueIsClosedV2",
        "QueueSizeV2",
        "Stage",
        "Unstage",
        "StagePeek",
        "StageSize",
        "StageClear",
        "MapStage",
        "MapUnstage",
        "MapUnstageNoKey",
        "MapPeek",
        "MapSize",
        "MapIncompleteSize",
        "MapClear",
        "OrderedMapStage",
        "OrderedMapUnstage",
        "OrderedMapUnstageNoKey",
        "OrderedMapPeek",
        "OrderedMapSize",
        "OrderedMapIncompleteSize",
        "OrderedMapClear",
        "Barrier",
        "ConditionalAccumulator",
        "SparseConditionalAccumulator",
        "ResourceConditionalAccumulator",
        "ResourceAccumulatorApplyGradient",
        "ResourceAccumulatorNumAccumulated",
        "ResourceAccumulatorSetGlobalStep",
        "ResourceAccumulatorTakeGradient",
    ),
    "boosted trees (Estimator models): in-memory resources": (
        "BoostedTreesEnsembleResourceHandleOp",
        "BoostedTreesCreateEnsemble",
        "BoostedTreesDeserializeEnsemble",
        "BoostedTreesSerializeEnsemble",
        "BoostedTreesGetEnsembleStates",
        "BoostedTreesPredict",
        "BoostedTreesTrainingPredict",
        "BoostedTreesExampleDebugOutputs",
        "BoostedTreesCenterBias",
        "BoostedTreesUpdateEnsemble",
        "BoostedTreesUpdateEnsembleV2",
        "IsBoostedTreesEnsembleInitialized",
        "BoostedTreesQuantileStreamResourceHandleOp",
        "BoostedTreesCreateQuantileStreamResource",
        "BoostedTreesQuantileStreamResourceAddSummaries",
        "BoostedTreesQuantileStreamResourceDeserialize",
        "BoostedTreesQuantileStreamResourceFlush",
        "BoostedTreesQuantileStreamResourceGetBucketBoundaries",
        "BoostedTreesFlushQuantileSummaries",
        "IsBoostedTreesQuantileStreamResourceInitialized",
    ),
}
ALLOWED_STATEFUL = frozenset(op for ops in _ALLOWED_STATEFUL_GROUPS.values() for op in ops)


@dataclass(frozen=True)
class ScanFinding:
    op: str
    family: str  # one of FAMILIES
    where: str  # the function the node sits in, TOP_LEVEL, or for an asset: asset_file_def / assets/
    node: str  # the node; for an asset: its file name
    detail: str = ""  # what else the line needs: where an asset resolves to, why a graph could not be read

    def describe(self) -> str:
        return describe_finding(self.to_dict())

    def to_dict(self) -> dict[str, str]:
        fields = {"op": self.op, "family": self.family, "where": self.where, "node": self.node}
        return {**fields, "detail": self.detail} if self.detail else fields


def describe_finding(finding: dict[str, str]) -> str:
    """`WriteFile in f (node n)`; `vocab.txt in assets/ (resolves to /etc/passwd)`; ..."""
    if finding["family"] == ASSET_OUTSIDE:
        return f"{finding['node']} in {finding['where']} ({finding.get('detail', '')})"
    line = f"{finding['op']} in {finding['where']} (node {finding['node']})"
    return f"{line}: {finding['detail']}" if finding.get("detail") else line


@dataclass(frozen=True)
class ScanResult:
    findings: tuple[ScanFinding, ...] = ()
    nodes: int = 0  # how many nodes were read (top-level graphs, function bodies, embedded graphs)
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
            "findings": [f.to_dict() for f in self.findings],
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
    """Scan `path`/saved_model.pb and the names under `path`/assets without loading the model."""
    from edgeport.model.saved_model_proto import read_saved_model_proto

    path = Path(path)
    return scan_proto(read_saved_model_proto(path), model_dir=path)


def scan_proto(proto, model_dir: Path | None = None) -> ScanResult:
    """Scan a `saved_model_pb2.SavedModel`: every MetaGraph's graphs; with `model_dir`, its assets on disk too."""
    findings: dict[ScanFinding, None] = {}  # ordered, without the repeats of a function two MetaGraphs share
    nodes = functions = 0
    registry = _OpRegistry()
    for meta in proto.meta_graphs:
        scan = _MetaGraphScan(meta, registry)
        findings.update(dict.fromkeys(scan.findings()))
        nodes += scan.nodes
        functions += len(scan.library)
        if model_dir is not None:
            findings.update(dict.fromkeys(_asset_file_def_findings(meta, Path(model_dir))))
    if model_dir is not None:
        findings.update(dict.fromkeys(_assets_folder_findings(Path(model_dir), findings)))
    return ScanResult(findings=tuple(findings), nodes=nodes, functions=functions)


def saver_nodes(meta) -> frozenset[str]:
    """The top-level nodes of the MetaGraph's saver (its save and restore ops and their inputs): never to run."""
    by_name = {node.name: node for node in meta.graph_def.node}
    roots = [meta.saver_def.save_tensor_name, meta.saver_def.restore_op_name, meta.saver_def.filename_tensor_name]
    return frozenset(_input_closure([_node_name(r) for r in roots if r], by_name))


class _OpRegistry:
    """TensorFlow's op registry, asked once per op name (this imports TensorFlow, never runs anything)."""

    def __init__(self):
        self._defs: dict[str, Any] = {}

    def op_def(self, op: str):
        if op not in self._defs:
            from edgeport.model.tf_quiet import import_tensorflow

            import_tensorflow()
            from tensorflow.python.framework import op_def_registry

            self._defs[op] = op_def_registry.get(op)
        return self._defs[op]

    def __contains__(self, op: str) -> bool:
        return self.op_def(op) is not None

    def stateful(self, op: str) -> bool:
        op_def = self.op_def(op)
        return op_def is not None and op_def.is_stateful


@dataclass(frozen=True)
class _Body:
    """One graph body: the top-level graph (args empty) or a function (its input argument names)."""

    where: str
    nodes: dict[str, Any]  # name -> NodeDef
    args: tuple[str, ...] = ()

    def source(self, tensor: str):
        """What `tensor` is, through Identity: ("arg", index), ("node", NodeDef) or ("none", name)."""
        name, seen = _node_name(tensor), set()
        while name not in seen:
            seen.add(name)
            if name in self.args:
                return "arg", self.args.index(name)
            node = self.nodes.get(name)
            if node is None:
                return "none", name
            if node.op not in _PASS_THROUGH or not _data_inputs(node):
                return "node", node
            name = _node_name(_data_inputs(node)[0])
        return "none", name


class _MetaGraphScan:
    """The findings of one MetaGraph: its top-level graph and every library function."""

    def __init__(self, meta, registry: _OpRegistry, where_prefix: str = "", depth: int = 0):
        self.meta = meta
        self.registry = registry
        self.prefix = where_prefix
        self.depth = depth
        graph = meta.graph_def
        self.library = {function.signature.name: function for function in graph.library.function}
        self.top = _Body(self._where(TOP_LEVEL), {node.name: node for node in graph.node})
        self.bodies = {
            name: _Body(
                self._where(name),
                {node.name: node for node in function.node_def},
                tuple(arg.name for arg in function.signature.input_arg),
            )
            for name, function in self.library.items()
        }
        self.nodes = len(graph.node) + sum(len(function.node_def) for function in self.library.values())
        self.assets = _asset_nodes(meta)
        self.filename = _node_name(meta.saver_def.filename_tensor_name)
        restore = _input_closure([_node_name(meta.saver_def.restore_op_name)], self.top.nodes)
        self.restore_scope = restore - {self.filename} if meta.saver_def.restore_op_name else frozenset()
        self.live = _input_closure(_loader_roots(meta) - self.restore_scope, self.top.nodes)
        self.restore_functions, self.save_functions = self._saver_functions(saver_nodes(meta))
        self.call_sites = _call_sites(self.top, self.bodies)

    def _where(self, where: str) -> str:
        return f"{self.prefix}{where}"

    def findings(self) -> Iterator[ScanFinding]:
        yield from self._body_findings(self.top, None)
        for name, body in self.bodies.items():
            yield from self._body_findings(body, name)

    def _body_findings(self, body: _Body, function: str | None) -> Iterator[ScanFinding]:
        for node in body.nodes.values():
            if node.op in CHECKPOINT_OPS:
                if not self._checkpoint_op_is_the_savers(node, body, function):
                    yield ScanFinding(node.op, FAMILY_OF[node.op], body.where, node.name)
                continue
            if node.op in _EMBEDDED_GRAPH_OPS:
                yield from self._embedded_findings(node, body)
                continue
            for family, detail in self._judge(node, body, function):
                yield ScanFinding(node.op, family, body.where, node.name, detail)

    def _judge(self, node, body: _Body, function: str | None) -> Iterator[tuple[str, str]]:
        family = FAMILY_OF.get(node.op) or self._conditional_family(node, body, function)
        if family:
            yield family, ""
        elif node.op not in self.library and node.op not in self.registry:  # a node may call a function by name
            yield UNKNOWN, ""
        elif self.registry.stateful(node.op) and node.op not in ALLOWED_STATEFUL and node.op not in _TEXT_FILE_TABLES:
            yield UNREVIEWED, ""
        for called in _function_attrs(node):
            if called in self.library:
                continue  # its body is scanned as a function of the library
            if called not in self.registry:
                yield UNKNOWN, f"calls {called}, neither a function of the graph nor an op TensorFlow knows"
            elif FAMILY_OF.get(called) or (self.registry.stateful(called) and called not in ALLOWED_STATEFUL):
                yield FAMILY_OF.get(called, UNREVIEWED), f"calls the op {called}"

    def _conditional_family(self, node, body: _Body, function: str | None) -> str | None:
        if node.op == "PrintV2" and _string_attr(node, "output_stream").startswith(b"file://"):
            return PRINT_TO_FILE
        if node.op in _PROTO_OPS and _string_attr(node, "descriptor_source") not in (b"", b"local://"):
            return FILE_SYSTEM  # reads a FileDescriptorSet from that path
        if node.op == "FixedUnigramCandidateSampler" and _string_attr(node, "vocab_file"):
            return FILE_SYSTEM
        if node.op in _TEXT_FILE_TABLES:
            inputs = _data_inputs(node)
            return None if len(inputs) > 1 and self._is_asset(body, inputs[1], function) else FILE_SYSTEM
        return None

    # --- checkpoint ops -------------------------------------------------------------------------------------

    def _checkpoint_op_is_the_savers(self, node, body: _Body, function: str | None) -> bool:
        """Whether a checkpoint op is the saver's own: a restore reading the filename the loader feeds, or a
        node nothing a loader runs depends on (the save path, a training script's extra Saver)."""
        reads = node.op in _CHECKPOINT_READS
        if function is None:
            if node.name in self.restore_scope:
                return reads and self._reads_the_fed_filename(body, node, function)
            return node.name not in self.live
        if function in self.save_functions:
            return True
        return function in self.restore_functions and reads and self._reads_the_fed_filename(body, node, function)

    def _reads_the_fed_filename(self, body: _Body, node, function: str | None) -> bool:
        inputs = _data_inputs(node)
        return bool(inputs) and self._traces_to(body, inputs[0], function, lambda n: n.name == self.filename)

    def _saver_functions(self, saver_scope: frozenset[str]) -> tuple[frozenset[str], frozenset[str]]:
        """(functions only the restore op calls, functions only the save path calls)."""
        restore_calls = self._reach(f for name in self.restore_scope for f in _called(self.top.nodes[name]))
        saver_calls = self._reach(f for name in saver_scope for f in _called(self.top.nodes[name]))
        other_roots = [f for node in self.top.nodes.values() if node.name not in saver_scope for f in _called(node)]
        other_roots += [name for name in self.library if name not in saver_calls]
        other_roots += list(_object_graph_functions(self.meta))
        model_calls = self._reach(other_roots)
        return frozenset(restore_calls - model_calls), frozenset(saver_calls - restore_calls - model_calls)

    def _reach(self, start: Iterable[str]) -> set[str]:
        return _closure(
            (name for name in start if name in self.library),
            lambda name: [f for node in self.library[name].node_def for f in _called(node) if f in self.library],
        )

    # --- where a filename comes from -----------------------------------------------------------------------

    def _is_asset(self, body: _Body, tensor: str, function: str | None) -> bool:
        return self._traces_to(body, tensor, function, self._holds_an_asset)

    def _holds_an_asset(self, node) -> bool:
        """A top-level node the loader feeds an asset's path, or a variable assigned only such a node."""
        if node.name in self.assets:
            return True
        if node.op not in ("ReadVariableOp", "VariableV2", "VarHandleOp"):
            return False
        variable = self.top.source(node.input[0])[1] if node.op == "ReadVariableOp" else node
        values = [
            _data_inputs(n)[1]
            for n in self.top.nodes.values()
            if n.op in ("AssignVariableOp", "Assign") and self.top.source(n.input[0]) == ("node", variable)
        ]
        return bool(values) and all(
            kind == "node" and found.name in self.assets for kind, found in map(self.top.source, values)
        )

    def _traces_to(self, body: _Body, tensor: str, function: str | None, accept, depth: int = 0) -> bool:
        """Whether `tensor` comes from a top-level node `accept`s: through Identity, and from a function
        argument through every call site of the function (and the object graph's bound inputs)."""
        kind, found = body.source(tensor)
        if kind == "node":
            return function is None and accept(found)
        if kind != "arg" or function is None or depth > 8:
            return False
        return self._argument_traces_to(function, found, accept, depth)

    def _argument_traces_to(self, function: str, index: int, accept, depth: int) -> bool:
        bound = self._bound_input(function, index)
        if bound is False:
            return False  # an explicit argument of a function the loader exposes: whatever the caller passes
        sites = self.call_sites.get(function, [])
        if any(site is None for site in sites):
            return False  # used by a While, a dataset op, ...: its arguments are not traced
        traced = all(
            len(_data_inputs(node)) > index
            and self._traces_to(body, _data_inputs(node)[index], caller, accept, depth + 1)
            for caller, body, node in sites
        )
        return traced and (bool(sites) or bound is True)

    def _bound_input(self, function: str, index: int) -> bool | None:
        """For a function of the object graph: whether argument `index` is bound to an asset (False: to
        anything else, or an explicit argument); None for a function the object graph does not name."""
        og = self.meta.object_graph_def
        if function not in og.concrete_functions:
            return None
        bound = list(og.concrete_functions[function].bound_inputs)
        offset = len(self.bodies[function].args) - len(bound)
        if index < offset:
            return False
        node_id = bound[index - offset]
        return node_id < len(og.nodes) and og.nodes[node_id].WhichOneof("kind") == "asset"

    # --- graphs serialized into constants ------------------------------------------------------------------

    def _embedded_findings(self, node, body: _Body) -> Iterator[ScanFinding]:
        """A DatasetFromGraph runs the GraphDef serialized in its input: scanned like the model's own graph."""
        graph_def, why = self._embedded_graph(node, body)
        if graph_def is None:
            yield ScanFinding(node.op, EMBEDDED_GRAPH, body.where, node.name, why)
            return
        from tensorflow.core.protobuf import meta_graph_pb2

        meta = meta_graph_pb2.MetaGraphDef()
        meta.graph_def.CopyFrom(graph_def)
        inner = _MetaGraphScan(meta, self.registry, f"{body.where} > {node.op} {node.name} > ", self.depth + 1)
        self.nodes += inner.nodes
        yield from inner.findings()

    def _embedded_graph(self, node, body: _Body):
        from google.protobuf import message
        from tensorflow.core.framework import graph_pb2

        inputs = _data_inputs(node)
        source: tuple[str, Any] = body.source(inputs[0]) if inputs else ("none", "")
        kind, const = source
        if self.depth >= _MAX_EMBEDDING_DEPTH:
            return None, f"a serialized graph nested {self.depth + 1} deep"
        if kind != "node" or const.op != "Const" or not const.attr["value"].tensor.string_val:
            return None, "its serialized graph is computed, not a constant the scan can read"
        graph_def = graph_pb2.GraphDef()
        try:
            graph_def.ParseFromString(const.attr["value"].tensor.string_val[0])
        except message.DecodeError:
            return None, "its serialized graph does not parse as a GraphDef"
        return graph_def, ""


def _loader_roots(meta) -> set[str]:
    """The top-level nodes a loader may run: signature tensors (the init op's included), collections' nodes and
    variables, assets. The saver_def's restore op is run too, by tf.saved_model.load: checked on its own."""
    from tensorflow.core.framework import variable_pb2

    names = [t.name for s in meta.signature_def.values() for t in (*s.inputs.values(), *s.outputs.values())]
    for key, collection in meta.collection_def.items():
        if key == "savers":  # other savers' defs: no loader runs them
            continue
        names += collection.node_list.value
        for packed in collection.bytes_list.value:
            variable = variable_pb2.VariableDef()
            try:
                variable.ParseFromString(packed)
            except Exception:  # noqa: BLE001 - a CondContextDef, ...: not a variable
                continue
            names += [variable.variable_name, variable.initializer_name, variable.snapshot_name]
            names.append(variable.initial_value_name)
    names += _asset_nodes(meta)
    return {_node_name(name) for name in names if name}


def _asset_nodes(meta) -> frozenset[str]:
    """The top-level nodes holding an asset's path (the loaders feed them the asset's place in assets/)."""
    return frozenset(_node_name(asset.tensor_info.name) for asset in _asset_file_defs(meta)) | frozenset(
        _node_name(name) for key in ("saved_model_assets", "asset_filepaths") for name in _node_list(meta, key)
    )


def _node_list(meta, key: str) -> list[str]:
    return list(meta.collection_def[key].node_list.value) if key in meta.collection_def else []


def _asset_file_defs(meta) -> list:
    """asset_file_def, or (TF1 Builder graphs) the AssetFileDefs packed in the saved_model_assets collection."""
    from tensorflow.core.protobuf import meta_graph_pb2

    assets = list(meta.asset_file_def)
    if "saved_model_assets" in meta.collection_def:
        for packed in meta.collection_def["saved_model_assets"].any_list.value:
            asset = meta_graph_pb2.AssetFileDef()
            if packed.Unpack(asset):
                assets.append(asset)
    return assets


def _asset_file_def_findings(meta, model_dir: Path) -> Iterator[ScanFinding]:
    """Every asset the MetaGraph names must resolve, symlinks followed, inside the model folder."""
    root = model_dir.resolve()
    for asset in _asset_file_defs(meta):
        resolved = (model_dir / "assets" / asset.filename).resolve()
        if not resolved.is_relative_to(root):
            yield ScanFinding("asset", ASSET_OUTSIDE, "asset_file_def", asset.filename, f"resolves to {resolved}")


def _assets_folder_findings(model_dir: Path, found: Iterable[ScanFinding]) -> Iterator[ScanFinding]:
    """Every entry of assets/ (the folder itself included) must resolve inside the model folder."""
    root, assets = model_dir.resolve(), model_dir / "assets"
    named = {f.node for f in found if f.family == ASSET_OUTSIDE}
    if not assets.exists() and not assets.is_symlink():
        return
    entries = [assets] if assets.is_symlink() else [assets, *sorted(_walk_without_following(assets))]
    for entry in entries:
        resolved = entry.resolve()
        name = entry.relative_to(assets).as_posix() if entry != assets else "assets"
        if not resolved.is_relative_to(root) and name not in named:
            yield ScanFinding("asset", ASSET_OUTSIDE, "assets/", name, f"resolves to {resolved}")


def _walk_without_following(folder: Path) -> Iterator[Path]:
    for entry in folder.iterdir():
        yield entry
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_without_following(entry)


def _object_graph_functions(meta) -> Iterator[str]:
    """The functions tf.saved_model.load may call: the object graph's, and its saveables' save/restore."""
    og = meta.object_graph_def
    yield from og.concrete_functions
    for node in og.nodes:
        for saveable in node.saveable_objects.values():
            for function in (saveable.save_function, saveable.restore_function):
                if 0 <= function < len(og.nodes):
                    kind = og.nodes[function]
                    yield from kind.function.concrete_functions
                    if kind.WhichOneof("kind") == "bare_concrete_function":
                        yield kind.bare_concrete_function.concrete_function_name


def _call_sites(top: _Body, functions: dict[str, _Body]) -> dict[str, list]:
    """function -> its call sites (caller function or None, caller body, node); a None site: a use whose
    arguments are not input i -> argument i (While, If, dataset ops...)."""
    sites: dict[str, list] = {}
    for caller, body in [(None, top), *functions.items()]:
        for node in body.nodes.values():
            called = node.attr["f"].func.name if node.op in _CALL_OPS else node.op
            sites.setdefault(called, []).append((caller, body, node))
            if node.op not in _CALL_OPS:
                for used in _function_attrs(node):
                    sites.setdefault(used, []).append(None)
    return sites


def _function_attrs(node) -> Iterator[str]:
    for value in node.attr.values():
        if value.func.name:
            yield value.func.name
        for function in value.list.func:
            yield function.name


def _called(node) -> Iterator[str]:
    """The library functions a node calls: `f` of a PartitionedCall, While's cond/body, If's branches, ..."""
    yield node.op
    yield from _function_attrs(node)


def _data_inputs(node) -> list[str]:
    return [name for name in node.input if not name.startswith("^")]


def _string_attr(node, key: str) -> bytes:
    value = node.attr.get(key)  # never node.attr[key]: that would add the key to the proto
    return value.s if value is not None else b""


def _node_name(tensor: str) -> str:
    """`^name`, `name:0` (graph) or `name:output:0` (function body) -> `name`."""
    return tensor.lstrip("^").split(":")[0]


def _closure(start: Iterable[str], neighbours: Callable[[str], Iterable[str]]) -> set[str]:
    """Every name reachable from `start` through `neighbours(name)`, `start` included."""
    seen: set[str] = set()
    todo = list(start)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += [n for n in neighbours(name) if n not in seen]
    return seen


def _input_closure(start: Iterable[str], nodes: dict[str, Any]) -> frozenset[str]:
    """The nodes `start` depends on (data and control inputs), `start` included."""
    return frozenset(
        _closure(
            (name for name in start if name in nodes),
            lambda name: [_node_name(i) for i in nodes[name].input if _node_name(i) in nodes],
        )
    )
