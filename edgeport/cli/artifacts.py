"""What an artifact says of itself, for `edgeport check` and `edgeport bench` (no converter's record at hand):
its inputs (a .tflite signature, an .onnx graph's inputs, a TF.js model.json signature) and its precision (its
folder's record from the run that made it, else read from the file).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeport.data import TensorSpec

MARKER = ".edgeport-target"  # run/output_folder.MARKER: "edgeport target <target>" on its first line


def artifact_inputs(artifact: Path) -> tuple[TensorSpec, ...] | None:
    """The inputs the artifact's own file declares: names, the dtype a feed takes (a quantized .tflite input
    takes real values, quantized by the runtime), shapes (None: a dynamic dimension). None where the file does
    not say: a format edgeport does not read, an unreadable file (the runtime then reports it in its own words)."""
    try:
        if artifact.suffix == ".tflite":
            return _tflite_inputs(artifact)
        if artifact.suffix == ".onnx":
            return _onnx_inputs(artifact)
        if artifact.name == "model.json":
            return _tfjs_inputs(artifact)
    except Exception:  # noqa: BLE001 - an unreadable file is the runtime's to report
        return None
    return None


def _tflite_inputs(artifact: Path) -> tuple[TensorSpec, ...] | None:
    from ai_edge_litert import schema_py_generated as schema

    from edgeport.formats.tflite.flatbuffer import read_model

    model = read_model(artifact)
    if not model.signatureDefs:
        return None
    signature = model.signatureDefs[0]
    tensors = model.subgraphs[signature.subgraphIndex].tensors
    names = {value: key.lower() for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    specs = []
    for item in signature.inputs:
        tensor = tensors[item.tensorIndex]
        dims = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
        shape = tuple(None if int(d) < 0 else int(d) for d in (dims if dims is not None else ()))
        quantized = tensor.quantization is not None and tensor.quantization.scale is not None
        dtype = "float32" if quantized and len(tensor.quantization.scale) else names.get(tensor.type, "float32")
        specs.append(TensorSpec(item.name.decode(), dtype, shape))
    return tuple(specs)


def _onnx_inputs(artifact: Path) -> tuple[TensorSpec, ...]:
    import onnx
    from onnx import helper

    graph = onnx.load(str(artifact), load_external_data=False).graph
    weights = {item.name for item in graph.initializer}
    specs = []
    for item in graph.input:
        if item.name in weights:
            continue
        tensor = item.type.tensor_type
        dtype = (
            "string"
            if tensor.elem_type == onnx.TensorProto.STRING
            else helper.tensor_dtype_to_np_dtype(tensor.elem_type).name
        )
        shape = (
            tuple(d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim)
            if tensor.HasField("shape")
            else None
        )
        specs.append(TensorSpec(item.name, dtype, shape))
    return tuple(specs)


TFJS_DTYPES = {"DT_FLOAT": "float32", "DT_HALF": "float16", "DT_DOUBLE": "float64", "DT_STRING": "string"}


def _tfjs_inputs(artifact: Path) -> tuple[TensorSpec, ...] | None:
    declared = json.loads(artifact.read_text(encoding="utf-8")).get("signature", {}).get("inputs")
    if not isinstance(declared, dict):
        return None
    specs = []
    for name, entry in declared.items():
        dtype = str(entry.get("dtype", "DT_FLOAT"))
        shape_proto = entry.get("tensorShape") or {}
        shape = (
            None
            if shape_proto.get("unknownRank")
            else tuple(None if int(d.get("size", -1)) < 0 else int(d["size"]) for d in shape_proto.get("dim", []))
        )
        specs.append(TensorSpec(name, TFJS_DTYPES.get(dtype, dtype.removeprefix("DT_").lower()), shape))
    return tuple(specs)


@dataclass(frozen=True)
class Inferred:
    """A precision and where it was found, as the check's output says it."""

    precision: str
    source: str


def artifact_precision(artifact: Path) -> Inferred:
    """The artifact's precision, for its default tolerances: the run that made it says it (report.json beside
    its folder, or the folder's `.edgeport-target` marker), else its file (quantized tensors, half-precision
    weights), else fp32 (the strictest defaults)."""
    return _from_record(artifact) or _from_file(artifact) or Inferred("fp32", "the default: nothing says otherwise")


def _from_record(artifact: Path) -> Inferred | None:
    folder = artifact.parent
    report = folder.parent / "report.json"
    try:
        if report.is_file() and report.stat().st_size < 64 << 20:
            for target in json.loads(report.read_text(encoding="utf-8")).get("targets", []):
                if target.get("folder") == folder.name and target.get("precision"):
                    return Inferred(str(target["precision"]), f"{report}: target {target.get('name')}")
    except (OSError, ValueError, AttributeError):
        pass
    try:
        with open(folder / MARKER, encoding="utf-8") as handle:
            first = handle.read(4096).splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return None
    if not first.startswith("edgeport target "):
        return None
    name = first.removeprefix("edgeport target ").strip()
    try:
        from edgeport.data import TargetSpec
        from edgeport.run.registry import registry

        spec = TargetSpec.parse(name)
        converter = registry().resolve(spec)[0]
        return Inferred(converter.precision(spec.variant), f"{folder / MARKER}: {name}")
    except Exception:  # noqa: BLE001 - a target this install does not know: the file decides
        return None


def _from_file(artifact: Path) -> Inferred | None:
    try:
        if artifact.suffix == ".tflite":
            found = _tflite_precision(artifact)
        elif artifact.suffix == ".onnx":
            found = _onnx_precision(artifact)
        elif artifact.name == "model.json":
            found = _tfjs_precision(artifact)
        else:
            return None
    except Exception:  # noqa: BLE001 - unreadable: the defaults, and the runtime reports the file
        return None
    return Inferred(found[0], f"{artifact.name}: {found[1]}") if found else None


def _tflite_precision(artifact: Path) -> tuple[str, str] | None:
    from ai_edge_litert import schema_py_generated as schema

    from edgeport.formats.tflite.flatbuffer import read_model

    model = read_model(artifact)
    types = schema.TensorType
    activations: Counter[int] = Counter()
    constants: Counter[int] = Counter()
    for subgraph in model.subgraphs or []:
        for tensor in subgraph.tensors or []:
            buffer = model.buffers[tensor.buffer] if model.buffers and tensor.buffer < len(model.buffers) else None
            constant = buffer is not None and buffer.data is not None and len(buffer.data) > 0
            quantized = tensor.quantization is not None and tensor.quantization.scale is not None
            if constant:
                constants[tensor.type] += 1
            elif quantized and len(tensor.quantization.scale):
                activations[tensor.type] += 1
    if activations[types.INT16]:
        return "int16x8", "int16 activations"
    if activations[types.INT8] or activations[types.UINT8]:
        return "int8", "int8 activations"
    if constants[types.INT8]:
        return "dynamic", "int8 weights, float activations"
    if constants[types.FLOAT16]:
        return "fp16", "float16 weights"
    return None


def _onnx_precision(artifact: Path) -> tuple[str, str] | None:
    import onnx

    model = onnx.load(str(artifact), load_external_data=False)
    ops = Counter(node.op_type for node in model.graph.node)
    if ops["DynamicQuantizeLinear"] or ops["MatMulInteger"] or ops["ConvInteger"]:
        return "dynamic", "dynamically quantized ops"
    if ops["QuantizeLinear"] or any(op.startswith("QLinear") for op in ops):
        return "int8", "quantized ops"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer):
        return "fp16", "float16 weights"
    return None


def _tfjs_precision(artifact: Path) -> tuple[str, str] | None:
    manifest = json.loads(artifact.read_text(encoding="utf-8")).get("weightsManifest", [])
    kinds = Counter(
        str((weight.get("quantization") or {}).get("dtype") or weight.get("dtype"))
        for group in manifest
        for weight in group.get("weights", [])
    )
    for dtype, precision in (("uint8", "uint8"), ("uint16", "uint16"), ("float16", "fp16")):
        if kinds[dtype]:
            return precision, f"{dtype} weights"
    return None
