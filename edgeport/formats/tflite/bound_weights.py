"""A large model to TFLite with its weights bound by edgeport: the converter never holds them.

The TFLite converter keeps about five copies of a model's weights (measured at 1.1 and 2.6 GB, official and
edgeport alike; benchmarks/bench_scale.py). Here it converts the frozen graph with its weights by reference
(model/weight_references.py), each weight one more input of the signature function, which is a small model.
Then each such input becomes a constant tensor whose data lies after the flatbuffer (the buffer offsets the
converter's own offset mode writes, which LiteRT reads), streamed from its variable into the file:
- a weight that only MatMul ops read as their right-hand side (a Dense kernel [in, out]) is given to the
  converter as [out, in], read with transpose_b, and written transposed: given [in, out], the converter puts
  a TRANSPOSE on it before a FULLY_CONNECTED, and its optimize-batch-matmul pattern
  FuseTransposeFCRhsToBatchMatmul (transpose of a non-constant right-hand side + FULLY_CONNECTED without bias
  -> BATCH_MATMUL) drops the FULLY_CONNECTED's fused activation: a Dense(relu) whose bias is zero or absent
  lost its Relu (issue 22: cosine 0.709);
- a TRANSPOSE the converter put on a weight alone (a Conv2D kernel HWIO to CONV_2D's OHWI) is applied to the
  values as they are written, and the op removed;
- `tflite:fp16` stores each float32 weight as float16 with a DEQUANTIZE before its users, as the converter
  does for the constants it halves; other dtypes are written as they are.
fp32 and fp16 only: the quantized variants compute their weights' scales inside the converter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import ConversionError
from edgeport.formats.tflite.while_passthrough import opcode_index

VARIANTS = ("", "fp16")
ALIGNMENT = 64


@dataclass(frozen=True)
class BoundWeight:
    buffer: int  # index in the model's buffers
    reference: Any  # WeightReference
    perm: tuple[int, ...] | None  # the transpose applied as it is written
    stored: str  # numpy dtype written: the variable's, or float16 for a float32 one in tflite:fp16

    def nbytes(self) -> int:
        return int(np.prod(self.reference.shape, dtype=np.int64)) * np.dtype(self.stored).itemsize


def convert_with_bound_weights(model, variant: str, path: Path, *, allow_tf_ops: bool):
    """Write `path`: the converter's model of the graph without its weights, the weights bound after it.
    Returns (the flatbuffer part, the converter's warnings, the notes the report needs)."""
    from edgeport.formats.tflite.conversion import convert_function
    from edgeport.formats.tflite.flatbuffer import read_model
    from edgeport.model.tf_quiet import import_tensorflow

    frozen = model.frozen
    graph_def, transposed_inputs = pretransposed_kernels(
        frozen.graph_def, frozen.references, frozen.output_tensors.values()
    )
    function, owner = signature_with_weight_inputs(
        import_tensorflow(), frozen, model.signature, graph_def=graph_def, transposed=transposed_inputs
    )
    converted, warnings = convert_function(function, owner, variant, allow_tf_ops=allow_tf_ops)
    flatbuffer, bound = bind(converted, frozen.references, variant, transposed=transposed_inputs)
    signatures = read_model(flatbuffer).signatureDefs
    inputs = {entry.name.decode() for entry in signatures[0].inputs} if signatures else set()
    if inputs != {spec.name for spec in model.signature.inputs}:
        raise ConversionError(f"the bound model's signature takes {sorted(inputs)}, not the SavedModel's inputs")
    write(path, flatbuffer, bound)
    transposed = sum(weight.perm is not None for weight in bound)
    note = (
        f"a large model: converted without its weights, then {len(bound)} weight(s) written by edgeport from "
        "the SavedModel's variables after the flatbuffer, one at a time (buffer offsets, which LiteRT reads: "
        f"no 2 GB FlatBuffers limit){f'; {transposed} transposed as written' if transposed else ''}"
        f"{'; stored as float16, each with a DEQUANTIZE' if variant == 'fp16' else ''}"
    )
    return flatbuffer, warnings, (note,)


def signature_with_weight_inputs(tf, frozen, signature, *, graph_def=None, transposed: frozenset[str] = frozenset()):
    """(concrete function, its owner): the frozen graph (or `graph_def`, a rewrite of it) as a function of the
    signature's inputs and then every weight kept by reference, each named like its placeholder node; a weight
    named in `transposed` is taken as its transpose (pretransposed_kernels)."""
    graph_def = frozen.graph_def if graph_def is None else graph_def
    names = [spec.name for spec in signature.inputs] + [ref.node for ref in frozen.references]
    if len(set(names)) != len(names):
        raise ConversionError("a weight's placeholder is named like a signature input")
    feeds = [frozen.input_tensors[spec.name] for spec in signature.inputs] + [r.tensor for r in frozen.references]
    outputs = [spec.name for spec in signature.outputs]

    def build() -> None:
        tf.compat.v1.import_graph_def(graph_def, name="")

    wrapped = tf.compat.v1.wrap_function(build, [])
    pruned = wrapped.prune(
        feeds=[wrapped.graph.get_tensor_by_name(tensor) for tensor in feeds],
        fetches=[wrapped.graph.get_tensor_by_name(frozen.output_tensors[name]) for name in outputs],
    )

    def signature_fn(**kwargs):
        return dict(zip(outputs, pruned(*[kwargs[name] for name in names]), strict=True))

    specs = {
        spec.name: tf.TensorSpec(None if spec.shape is None else list(spec.shape), spec.dtype, name=spec.name)
        for spec in signature.inputs
    }
    specs |= {
        ref.node: tf.TensorSpec(list(ref.shape)[:: -1 if ref.node in transposed else 1], ref.dtype, name=ref.node)
        for ref in frozen.references
    }
    function = tf.function(signature_fn)
    owner = tf.Module()
    owner.signature_fn = function
    owner.keepalive = (wrapped, pruned)
    return function.get_concrete_function(**specs), owner


def bind(
    flatbuffer: bytes, references: Sequence, variant: str, *, transposed: frozenset[str] = frozenset()
) -> tuple[bytes, tuple[BoundWeight, ...]]:
    """The converted small model with each weight input made a constant whose data follows the flatbuffer;
    returns (the flatbuffer with those buffers' offsets and sizes, what to write after it, in order). A weight
    named in `transposed` was given to the converter as its transpose (a 2-D kernel), and is written so."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    if len(model.signatureDefs or []) != 1:
        raise ConversionError("the converted model has no single signature to take the weight inputs from")
    subgraph, signature = model.subgraphs[0], model.signatureDefs[0]
    by_name = {entry.name.decode(): entry.tensorIndex for entry in signature.inputs}
    bound: list[BoundWeight] = []
    dequantize: list[Any] = []
    for reference in references:
        given = by_name.get(reference.node)
        if given is None:  # the converter found no use for it
            continue
        target, perm = _folded_transpose(model, subgraph, given, schema)
        if reference.node in transposed:  # the input was the kernel's transpose; then any TRANSPOSE on it
            perm = (1, 0) if perm is None else tuple((1, 0)[axis] for axis in perm)
            perm = None if perm == (0, 1) else perm
        model.buffers.append(schema.BufferT())
        buffer = len(model.buffers) - 1
        halved = variant == "fp16" and reference.dtype == "float32"
        if halved:
            dequantize.append(_half_with_dequantize(model, subgraph, target, buffer, schema))
        else:
            subgraph.tensors[target].buffer = buffer
        bound.append(BoundWeight(buffer, reference, perm, "float16" if halved else reference.dtype))
        subgraph.inputs = [index for index in subgraph.inputs if index != given]
        signature.inputs = [entry for entry in signature.inputs if entry.tensorIndex != given]
    subgraph.operators = [*dequantize, *subgraph.operators]
    return _with_offsets(model, bound, flatbuffer_utils), tuple(bound)


def pretransposed_kernels(graph_def, references: Sequence, outputs=()) -> tuple[Any, frozenset[str]]:
    """(graph_def, the weights it takes transposed): each 2-D weight whose every reader is the right-hand side
    of a MatMul (transpose_b false) or a BatchMatMul (adj_y false), through Identity ops, becomes a placeholder
    of its transpose read with transpose_b / adj_y: the converter then makes a FULLY_CONNECTED of it with no
    TRANSPOSE, and no pattern of its own drops that op's fused activation (the module docstring). The input
    graph_def is left as it is (the model's shared frozen graph); the copy holds no weight kept by reference."""
    nodes = {node.name: node for node in graph_def.node}
    consumers: dict[str, list[Any]] = {}
    for node in graph_def.node:
        for source in node.input:
            if not source.startswith("^"):
                consumers.setdefault(source.split(":")[0], []).append(node)
    rewrites: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
    for reference in references:
        if len(reference.shape) != 2 or reference.node not in nodes:
            continue
        chain, readers = _kernel_readers(reference.node, consumers, {name.split(":")[0] for name in outputs})
        if readers:
            rewrites[reference.node] = (chain, readers)
    if not rewrites:
        return graph_def, frozenset()
    copy = type(graph_def)()
    copy.CopyFrom(graph_def)
    nodes = {node.name: node for node in copy.node}
    for chain, readers in rewrites.values():
        for name in chain:
            node = nodes[name]
            if node.op == "Placeholder":
                dims = node.attr["shape"].shape.dim
                dims[0].size, dims[1].size = dims[1].size, dims[0].size
            for shape in node.attr["_output_shapes"].list.shape if "_output_shapes" in node.attr else ():
                if len(shape.dim) == 2:
                    shape.dim[0].size, shape.dim[1].size = shape.dim[1].size, shape.dim[0].size
        for name, flag in readers:
            nodes[name].attr[flag].b = True
    return copy, frozenset(rewrites)


def _kernel_readers(placeholder: str, consumers: dict[str, list[Any]], outputs: set[str]):
    """(the placeholder and the Identity ops its value flows through, [(MatMul-like reader, the flag to set)])
    when every reader takes it as a MatMul's b (transpose_b false) or a BatchMatMul's y (adj_y false) and no
    output is it; ([], []) otherwise."""
    chain, readers, pending = [placeholder], [], [placeholder]
    while pending:
        name = pending.pop()
        if name in outputs:
            return [], []
        for node in consumers.get(name, []):
            sources = [source.split(":")[0] for source in node.input if not source.startswith("^")]
            if node.op == "Identity":
                chain.append(node.name)
                pending.append(node.name)
                continue
            flag = _RIGHT_HAND_FLAGS.get(node.op)
            if flag is None or len(sources) != 2 or sources[1] != name or sources[0] in chain or node.attr[flag].b:
                return [], []
            readers.append((node.name, flag))
    return chain, readers


_RIGHT_HAND_FLAGS = {
    "MatMul": "transpose_b",
    "BatchMatMul": "adj_y",
    "BatchMatMulV2": "adj_y",
    "BatchMatMulV3": "adj_y",
}


def write(path: Path, flatbuffer: bytes, bound: Sequence[BoundWeight]) -> None:
    """The flatbuffer, then each weight at its buffer's offset, streamed from its variable."""
    from edgeport.model.weight_references import write_aligned

    with path.open("wb") as sink:
        sink.write(flatbuffer)
        written = len(flatbuffer)
        for weight in bound:
            offset, length = write_aligned(sink, written, _pieces(weight), weight.stored, ALIGNMENT)
            written = offset + length


def _pieces(weight: BoundWeight):
    if weight.perm is not None:
        yield np.transpose(weight.reference.value(), weight.perm)
    else:
        yield from weight.reference.chunks()


def _folded_transpose(model, subgraph, given: int, schema) -> tuple[int, tuple[int, ...] | None]:
    """(the tensor that gets the data, the permutation to write it with): a TRANSPOSE that is the weight's only
    user, with a constant permutation, is dropped and its output takes the transposed values."""
    users = [op for op in subgraph.operators if given in op.inputs]
    if len(users) != 1 or _builtin(model, users[0]) != schema.BuiltinOperator.TRANSPOSE:
        return given, None
    transpose = users[0]
    if transpose.inputs[0] != given or len(transpose.inputs) < 2:
        return given, None
    permutation = model.buffers[subgraph.tensors[transpose.inputs[1]].buffer].data
    if permutation is None or not len(permutation):
        return given, None
    subgraph.operators.remove(transpose)
    return transpose.outputs[0], tuple(int(i) for i in np.frombuffer(bytes(permutation), "<i4"))


def _half_with_dequantize(model, subgraph, target: int, buffer: int, schema):
    """A float16 constant tensor on `buffer` and the DEQUANTIZE op that computes `target` from it."""
    tensor = subgraph.tensors[target]
    half = schema.TensorT()
    half.shape = None if tensor.shape is None else list(tensor.shape)
    half.type = schema.TensorType.FLOAT16
    half.buffer = buffer
    half.name = (tensor.name or b"weight") + b"/fp16"
    subgraph.tensors.append(half)
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index(model, schema, schema.BuiltinOperator.DEQUANTIZE)
    operator.inputs = [len(subgraph.tensors) - 1]
    operator.outputs = [target]
    return operator


def _with_offsets(model, bound: Sequence[BoundWeight], flatbuffer_utils) -> bytes:
    """Serialize with each bound buffer's offset and size; offsets follow the flatbuffer itself, whose size
    does not depend on their values (uint64 fields, written once they are non-zero)."""
    size = 0
    for _ in range(3):
        offset = _aligned(size if size else 1 << 40)
        for weight in bound:
            model.buffers[weight.buffer].offset = offset
            model.buffers[weight.buffer].size = weight.nbytes()
            offset = _aligned(offset + weight.nbytes())
        data = bytes(flatbuffer_utils.convert_object_to_bytearray(model))
        if size and len(data) == size:
            return data
        size = len(data)
        if not bound:
            return data
    raise ConversionError("the flatbuffer's size did not settle with its buffer offsets")


def _aligned(offset: int) -> int:
    return -(-offset // ALIGNMENT) * ALIGNMENT


def _builtin(model, operator) -> int:
    code = model.operatorCodes[operator.opcodeIndex]
    return max(code.builtinCode, code.deprecatedBuiltinCode)
