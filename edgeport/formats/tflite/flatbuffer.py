"""Read a .tflite flatbuffer: operators (builtin name, version, custom code), signatures, tensors.

Shared by the TFLite, TFLite Micro and LiteRT modules; uses the schema bindings shipped with ai-edge-litert.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OperatorUse:
    name: str  # builtin name ("CONV_2D") or the custom code ("FlexErf")
    version: int
    custom: bool
    count: int


def _schema():
    from ai_edge_litert import schema_py_generated as schema

    return schema


def builtin_names() -> dict[int, str]:
    schema = _schema()
    return {value: key for key, value in vars(schema.BuiltinOperator).items() if not key.startswith("_")}


def read_model(source: Path | bytes):
    schema = _schema()
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    return schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(data, 0))


def operator_uses(source: Path | bytes) -> list[OperatorUse]:
    model = read_model(source)
    names = builtin_names()
    counts: Counter[int] = Counter()
    for subgraph in model.subgraphs or []:
        for op in subgraph.operators or []:
            counts[op.opcodeIndex] += 1
    uses = []
    for index, code in enumerate(model.operatorCodes or []):
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        custom = code.customCode.decode() if code.customCode else None
        name = custom if custom else names.get(builtin, f"BUILTIN_{builtin}")
        uses.append(
            OperatorUse(name=name, version=int(code.version or 1), custom=bool(custom), count=counts.get(index, 0))
        )
    return uses


def flex_ops(source: Path | bytes) -> list[str]:
    return sorted(u.name.removeprefix("Flex") for u in operator_uses(source) if u.custom and u.name.startswith("Flex"))


def custom_ops(source: Path | bytes) -> list[str]:
    return sorted(u.name for u in operator_uses(source) if u.custom and not u.name.startswith("Flex"))


def operator_outputs(source: Path | bytes, subgraph: int = 0) -> list[int]:
    """Indices of the tensors the operators of a subgraph produce, in execution order (the per-layer
    comparison reads these; weights and constants are not among them)."""
    model = read_model(source)
    graphs = model.subgraphs or []
    if subgraph >= len(graphs):
        return []
    return [
        int(index)
        for op in graphs[subgraph].operators or []
        for index in (op.outputs if op.outputs is not None else [])
        if index >= 0
    ]


def operator_output_names(source: Path | bytes, subgraph: int = 0) -> list[str]:
    """Names of the tensors a subgraph's operators produce, in execution order (what the TFLite quantizer's
    `denylisted_nodes` names an op by)."""
    model = read_model(source)
    graphs = model.subgraphs or []
    if subgraph >= len(graphs):
        return []
    tensors = graphs[subgraph].tensors or []
    return [tensors[index].name.decode() for index in operator_outputs(source, subgraph)]


def io_tensor_types(source: Path | bytes) -> dict[str, str]:
    """The first subgraph's inputs and outputs: tensor name -> type in lower case ("float32", "int8", "string").
    Read without unpacking the model (its weights stay in the buffer, as a large model's must)."""
    schema = _schema()
    names = {value: key.lower() for key, value in vars(schema.TensorType).items() if not key.startswith("_")}
    data = source if isinstance(source, (bytes, bytearray)) else Path(source).read_bytes()
    model = schema.Model.GetRootAsModel(data, 0)
    subgraph = model.Subgraphs(0)
    indices = [subgraph.Inputs(i) for i in range(subgraph.InputsLength())]
    indices += [subgraph.Outputs(i) for i in range(subgraph.OutputsLength())]
    said = {}  # tensor index -> the signature's name for it ("x"), where the model has a signature
    if model.SignatureDefsLength():
        signature = model.SignatureDefs(0)
        for maps, length in (
            (signature.Inputs, signature.InputsLength()),
            (signature.Outputs, signature.OutputsLength()),
        ):
            for i in range(length):
                said[maps(i).TensorIndex()] = (maps(i).Name() or b"").decode()
    types = {}
    for index in indices:
        tensor = subgraph.Tensors(index)
        types[said.get(index) or (tensor.Name() or b"").decode()] = names.get(tensor.Type(), "unknown")
    return types
