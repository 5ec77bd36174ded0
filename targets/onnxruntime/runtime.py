"""ONNX Runtime: an .onnx or .ort file on the CPU execution provider.

Sessions run sequentially with `settings.threads` intra-op threads. Feeds and outputs are keyed by the
signature's names. Feeds always come in the signature's layout: when the converter made an input NCHW
(`inputs_as_nchw`), the model says so in its metadata (`edgeport.input_permutations`, JSON name ->
permutation) and the session transposes the feed before running. Outputs are returned as the model
produces them (an NCHW output stays NCHW; the Artifact's output_permutations tell the check).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from edgeport.contracts import Feeds, Runtime, RuntimeSettings, Session
from edgeport.errors import RuntimeFailure, first_line
from edgeport.formats.onnx.conventions import INPUT_PERMUTATIONS_KEY, OUTPUT_PERMUTATIONS_KEY, register_custom_ops

PROVIDER = "CPUExecutionProvider"
EXTENSIONS_INSTALL_COMMAND = "pip install onnxruntime-extensions"
_ONNX_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}


def session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    register_custom_ops(options)
    return options


class ONNXRuntimeSession(Session):
    def __init__(self, path: Path, threads: int):
        import onnxruntime as ort

        try:
            self._session = ort.InferenceSession(str(path), session_options(threads), providers=[PROVIDER])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail, InvalidGraph, NoSuchFile...
            raise RuntimeFailure(_load_failure(path, exc)) from None
        metadata = self._session.get_modelmeta().custom_metadata_map
        self._permutations = {
            name: tuple(perm) for name, perm in json.loads(metadata.get(INPUT_PERMUTATIONS_KEY, "{}")).items()
        }
        self._input_types = {value.name: _ONNX_TYPES.get(value.type) for value in self._session.get_inputs()}
        self._output_names = [value.name for value in self._session.get_outputs()]

    def run(self, feeds: Feeds) -> Feeds:
        missing = sorted(set(self._input_types) - set(feeds))
        if missing:
            raise RuntimeFailure(
                f"onnxruntime: feed lacks model inputs {', '.join(missing)} (got {', '.join(sorted(feeds))})"
            )
        arguments = {
            name: self._prepare(name, np.asarray(feeds[name]), dtype) for name, dtype in self._input_types.items()
        }
        try:
            values = self._session.run(self._output_names, arguments)
        except Exception as exc:  # noqa: BLE001
            raise RuntimeFailure(f"onnxruntime failed to run: {first_line(exc)}") from None
        return {name: _as_bytes(value) for name, value in zip(self._output_names, values, strict=True)}

    def _prepare(self, name: str, value: np.ndarray, dtype) -> np.ndarray:
        permutation = self._permutations.get(name)
        if permutation:
            value = np.ascontiguousarray(np.transpose(value, permutation))
        if dtype is np.object_:
            return _as_text(name, value)
        if dtype is not None and value.dtype != dtype:
            value = value.astype(dtype)
        return value

    def close(self) -> None:
        self._session = None


def _as_text(name: str, value: np.ndarray) -> np.ndarray:
    """A string feed as onnxruntime takes it: str elements (it reads bytes elements as something else)."""
    flat = np.empty(value.size, dtype=object)
    for index, element in enumerate(value.reshape(-1)):
        if isinstance(element, bytes | np.bytes_):
            try:
                element = bytes(element).decode("utf-8")
            except UnicodeDecodeError:
                raise RuntimeFailure(
                    f"onnxruntime: string input {name!r} holds bytes that are not UTF-8 (element {index}); "
                    "ONNX strings are UTF-8 text"
                ) from None
        flat[index] = str(element)
    return flat.reshape(value.shape)


def _as_bytes(value):
    """String outputs as TensorFlow returns them (bytes elements), so they compare with the reference."""
    if isinstance(value, np.ndarray) and value.dtype == object:
        flat = np.empty(value.size, dtype=object)
        flat[:] = [element.encode("utf-8") if isinstance(element, str) else element for element in value.reshape(-1)]
        return flat.reshape(value.shape)
    return value


class ONNXRuntime(Runtime):
    name = "onnxruntime"
    artifact_suffixes = (".onnx", ".ort")
    description = "ONNX Runtime, CPU execution provider, on this CPU"

    def requirements(self):
        from edgeport.run.requirements import python_package

        return (python_package("onnxruntime", extra="onnx", why="runs .onnx and .ort files"),)

    def version(self) -> str:
        from importlib.metadata import version

        return f"onnxruntime {version('onnxruntime')} ({PROVIDER})"

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        return ONNXRuntimeSession(artifact, settings.threads)

    def intermediates(self, artifact, samples, settings, names, aliases):
        """The layers' tensors added as graph outputs (tf2onnx keeps TF names, `name:0`; the quantizer adds
        `_QuantizeLinear_Output`), int8/uint8 values dequantized with the scale and zero point of the node
        that made them. Naming a tensor as an output keeps onnxruntime from fusing it away at load."""
        return onnx_intermediates(Path(artifact), samples, settings.threads, names, aliases)

    def output_permutations(self, artifact: Path) -> dict[str, tuple[int, ...]]:
        """From the model metadata the ONNX converter writes (OUTPUT_PERMUTATIONS_KEY)."""
        import onnxruntime as ort

        try:
            options = ort.SessionOptions()
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
            session = ort.InferenceSession(str(artifact), options, providers=[PROVIDER])
            metadata = session.get_modelmeta().custom_metadata_map
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises Fail, InvalidGraph, NoSuchFile...
            raise RuntimeFailure(_load_failure(artifact, exc)) from None
        try:
            declared = json.loads(metadata.get(OUTPUT_PERMUTATIONS_KEY, "{}"))
        except ValueError:
            raise RuntimeFailure(f"{artifact}: metadata {OUTPUT_PERMUTATIONS_KEY} is not JSON; convert again") from None
        return {name: tuple(int(axis) for axis in perm) for name, perm in declared.items()}


# Where a quantized op's output scale and zero point are among its inputs (others: 3, 4, as QLinearSigmoid).
_OUTPUT_QPARAMS = {
    "QuantizeLinear": (1, 2),
    "QLinearConv": (6, 7),
    "QLinearMatMul": (6, 7),
    "QLinearAdd": (6, 7),
    "QLinearMul": (6, 7),
    "QLinearConcat": (0, 1),
}


_CHANNELS_FIRST = frozenset(
    {
        "Conv",
        "QLinearConv",
        "FusedConv",
        "ConvTranspose",
        "MaxPool",
        "AveragePool",
        "GlobalAveragePool",
        "GlobalMaxPool",
        "QLinearAveragePool",
        "QLinearGlobalAveragePool",
        "BatchNormalization",
        "InstanceNormalization",
        "LRN",
    }
)
_KEEPS_LAYOUT = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "Sigmoid",
        "Tanh",
        "HardSigmoid",
        "HardSwish",
        "Elu",
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Max",
        "Min",
        "QLinearAdd",
        "QLinearMul",
        "QLinearLeakyRelu",
        "QLinearSigmoid",
        "QuantizeLinear",
        "DequantizeLinear",
        "Identity",
        "Cast",
        "Pad",
        "Resize",
    }
)


def channels_first(graph) -> set[str]:
    """Tensors in NCHW: made by a channels-first op (tf2onnx's Conv, pools), or by an op keeping its input's
    layout; a Transpose [0, 2, 3, 1] takes one back to NHWC, [0, 3, 1, 2] makes one."""
    nchw: set[str] = set()
    for node in graph.node:
        first = node.input[0] if node.input else ""
        if node.op_type in _CHANNELS_FIRST:
            made = True
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), [])
            made = perm == [0, 3, 1, 2] and first not in nchw
        else:
            made = node.op_type in _KEEPS_LAYOUT and any(name in nchw for name in node.input)
        if made:
            nchw.update(output for output in node.output if output)
    return nchw


def onnx_intermediates(artifact: Path, samples, threads: int, names, aliases):
    import tempfile

    import onnx
    from onnx import numpy_helper

    from edgeport.checks.layers import LayerRun, match_names

    model = onnx.load(str(artifact))
    graph = model.graph
    producers = {output: node for node in graph.node for output in node.output if output}
    constants = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    matched = match_names([output for node in graph.node for output in node.output if output], names)
    outputs = {o.name for o in graph.output}
    for output, layer in aliases.items():
        if output in outputs and layer not in matched.values():
            matched[output] = layer
    for tensor in matched:
        if tensor not in outputs:
            graph.output.append(onnx.ValueInfoProto(name=tensor))

    def qparams(tensor: str, hops: int = 0):
        node = producers.get(tensor)
        if node is None or hops > 8:
            return None
        where = _OUTPUT_QPARAMS.get(node.op_type, (3, 4) if node.op_type.startswith("QLinear") else None)
        if where is None:  # Transpose, MaxPool, Reshape... on quantized values: the input's parameters
            return qparams(node.input[0], hops + 1) if node.input else None
        scale, zero = (node.input[i] if i < len(node.input) else "" for i in where)
        if scale not in constants:
            return None
        return float(np.asarray(constants[scale]).reshape(-1)[0]), float(
            np.asarray(constants.get(zero, 0)).reshape(-1)[0]
        )

    with tempfile.TemporaryDirectory(prefix="edgeport-layers-") as folder:
        path = Path(folder) / "layers.onnx"
        onnx.save(model, str(path))
        session = ONNXRuntimeSession(path, threads)
        try:
            runs = [session.run(feed) for feed in samples.feeds()]
        finally:
            session.close()
    values = []
    scales = {tensor: qparams(tensor) for tensor in matched}
    nchw = channels_first(graph)
    for run in runs:
        sample = {}
        for tensor, layer in matched.items():
            value = np.asarray(run[tensor])
            if np.issubdtype(value.dtype, np.integer):
                found = scales[tensor]
                if found is None:
                    continue
                value = (value.astype(np.float32) - found[1]) * found[0]
            if tensor in nchw and value.ndim == 4:
                value = np.transpose(value, (0, 2, 3, 1))  # back to TensorFlow's NHWC
            sample[layer] = value.astype(np.float32)
        values.append(sample)
    ids = explorer_node_ids(graph)
    return LayerRun(
        values=values,
        artifact_names={layer: tensor for tensor, layer in matched.items()},
        graph_id=graph.name,
        node_ids={layer: ids[tensor] for tensor, layer in matched.items() if tensor in ids},
    )


def explorer_node_ids(graph) -> dict[str, str]:
    """{output tensor: the id Model Explorer's ONNX adapter (model-explorer-onnx) gives its producing node}:
    the node's name, `<node_i>` for the i-th node when it has none. That adapter tags outputs `__tensor_tag`,
    not the `tensor_name` Model Explorer resolves node data keys by, so ONNX node data is keyed by node id."""
    return {
        output: node.name or f"<node_{index}>"
        for index, node in enumerate(graph.node)
        for output in node.output
        if output
    }


def _load_failure(path: Path, exc: BaseException) -> str:
    text = str(exc)
    if "ai.onnx.contrib" in text and importlib.util.find_spec("onnxruntime_extensions") is None:
        return f"onnxruntime cannot load {path}: it uses ai.onnx.contrib custom ops; run: {EXTENSIONS_INSTALL_COMMAND}"
    return f"onnxruntime cannot load {path}: {first_line(exc)}"
