"""TFLite Micro runtime: TFLM's reference kernels on the host, through the `tflite-micro` Python package.

Inputs and outputs are keyed by the .tflite signature's names (TFLM's interpreter indexes them by position;
the signature def maps names to tensors, the subgraph's input/output lists give positions). Float feeds are
quantized with each input's scale and zero point; outputs are dequantized; the benchmark does both outside
the timed call. `measure` searches the smallest
tensor arena, reports flash (the model's bytes), MACs per op and in total, and how closely TFLM's integer
outputs agree with LiteRT's on the same .tflite. Latency is host-simulated: not what a device will show.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.contracts import Feeds, Runtime, RuntimeSettings, SampleSet, Session
from edgeport.errors import RuntimeFailure
from edgeport.formats.tflite.quantization import dequantize, quantize

SESSION_ARENA_BYTES = 16 << 20  # a generous arena for checking and timing; `measure` finds the real minimum
MAX_SESSION_ARENA_BYTES = 1 << 30
INTERMEDIATES_NOTE = (
    "TFLM's intermediates were taken on LiteRT's reference kernels on the same flatbuffer (TFLM's host "
    "interpreter exposes none); measurements.litert_* say how closely TFLM's outputs agree with LiteRT's"
)


@dataclass(frozen=True)
class Binding:
    """Signature names -> positions in the main subgraph's input and output lists."""

    inputs: dict[str, int]
    outputs: dict[str, int]


def signature_binding(model) -> Binding:
    subgraph = model.subgraphs[0]
    positions_in = {int(t): i for i, t in enumerate(subgraph.inputs)}
    positions_out = {int(t): i for i, t in enumerate(subgraph.outputs)}
    if model.signatureDefs:
        signature = model.signatureDefs[0]
        return Binding(
            inputs={m.name.decode(): positions_in[m.tensorIndex] for m in signature.inputs},
            outputs={m.name.decode(): positions_out[m.tensorIndex] for m in signature.outputs},
        )
    return Binding(
        inputs={subgraph.tensors[t].name.decode(): i for t, i in positions_in.items()},
        outputs={subgraph.tensors[t].name.decode(): i for t, i in positions_out.items()},
    )


def _open_interpreter(data: bytes, where: Path):
    from tflite_micro.python.tflite_micro import runtime

    from edgeport.run.capture import capture_output

    arena = max(SESSION_ARENA_BYTES, 20 * len(data))
    while True:
        with capture_output() as captured:
            try:
                return runtime.Interpreter.from_bytes(data, arena_size=arena)
            except (RuntimeError, ValueError) as exc:
                error = exc
        log = [line.strip() for line in captured.lines if line.strip()]
        if arena >= MAX_SESSION_ARENA_BYTES or not any("allocate" in line for line in log):
            detail = "; ".join(log[-3:]) or str(error)
            raise RuntimeFailure(f"TFLite Micro cannot load {where}: {detail[:400]}")
        arena *= 2


class TFLMSession(Session):
    def __init__(self, path: Path):
        from edgeport.formats.tflite.flatbuffer import read_model

        data = Path(path).read_bytes()
        if data[4:8] != b"TFL3":
            raise RuntimeFailure(
                f"TFLite Micro cannot load {path}: not a .tflite flatbuffer (no TFL3 identifier); "
                "pass the model.tflite a tflm conversion wrote"
            )
        try:
            binding = signature_binding(read_model(data))
        except Exception as exc:  # noqa: BLE001 - a damaged flatbuffer fails in many ways
            raise RuntimeFailure(
                f"TFLite Micro cannot load {path}: damaged flatbuffer ({type(exc).__name__}); convert the model again"
            ) from None
        self._interpreter = _open_interpreter(data, path)
        self.binding = binding
        self._inputs = {name: self._interpreter.get_input_details(i) for name, i in self.binding.inputs.items()}
        self._outputs = {name: self._interpreter.get_output_details(i) for name, i in self.binding.outputs.items()}

    def quantize_feeds(self, feeds: Feeds) -> Feeds:
        return {name: quantize(np.asarray(feeds[name]), detail) for name, detail in self._inputs.items()}

    def run_raw(self, quantized: Feeds) -> Feeds:
        """Feeds already in the inputs' own dtypes; outputs as the model stores them (int8 for int8 I/O)."""
        for name, position in self.binding.inputs.items():
            shape = tuple(int(d) for d in self._inputs[name]["shape"])
            self._interpreter.set_input(np.ascontiguousarray(quantized[name]).reshape(shape), position)
        try:
            self._interpreter.invoke()
        except RuntimeError as exc:
            raise RuntimeFailure(f"TFLite Micro failed to run the model: {exc}") from None
        return {name: np.array(self._interpreter.get_output(i)) for name, i in self.binding.outputs.items()}

    def prepare(self, feeds: Feeds) -> Feeds:
        """Quantized and laid out as the interpreter takes them, before the timing protocol's clock starts."""
        return {
            name: np.ascontiguousarray(value).reshape(tuple(int(d) for d in self._inputs[name]["shape"]))
            for name, value in self.quantize_feeds(feeds).items()
        }

    def run_prepared(self, prepared: Feeds) -> Feeds:
        """The timed call: set the inputs, invoke, copy the outputs out (in the model's own dtypes)."""
        return self.run_raw(prepared)

    def run(self, feeds: Feeds) -> Feeds:
        raw = self.run_raw(self.quantize_feeds(feeds))
        return {name: dequantize(value, self._outputs[name]) for name, value in raw.items()}


def _output_steps(model, names: dict[int, str]) -> dict[int, float]:
    """Per output position: one quantization step in the output's own units.

    Integer outputs: 1. Float outputs (io_type float) come from a final DEQUANTIZE: the scale of its input.
    """
    from ai_edge_litert.schema_py_generated import TensorType

    subgraph = model.subgraphs[0]
    producers = {int(tensor): op for op in subgraph.operators or [] for tensor in op.outputs}
    steps = {}
    for position, tensor_index in enumerate(subgraph.outputs):
        steps[position] = 1.0
        producer = producers.get(int(tensor_index))
        if subgraph.tensors[tensor_index].type != TensorType.FLOAT32 or producer is None:
            continue
        code = model.operatorCodes[producer.opcodeIndex]
        if names.get(max(code.builtinCode, code.deprecatedBuiltinCode)) == "DEQUANTIZE":
            quantization = subgraph.tensors[producer.inputs[0]].quantization
            if quantization is not None and quantization.scale is not None and len(quantization.scale):
                steps[position] = float(quantization.scale[0])
    return steps


def litert_agreement(path: Path, session: TFLMSession, samples: SampleSet) -> dict[str, float]:
    """Max |TFLM - LiteRT| in quantization steps, and the share of output values equal / within one step."""
    from ai_edge_litert.interpreter import Interpreter

    from edgeport.formats.tflite.flatbuffer import builtin_names, read_model

    interpreter = Interpreter(model_path=str(path), num_threads=1)
    runner = interpreter.get_signature_runner(next(iter(interpreter.get_signature_list())))
    steps = _output_steps(read_model(path), builtin_names())
    differences = []
    for feed in samples.feeds():
        quantized = session.quantize_feeds(feed)
        ours = session.run_raw(quantized)
        theirs = runner(**quantized)
        for name, position in session.binding.outputs.items():
            difference = np.abs(ours[name].astype(np.float64) - np.asarray(theirs[name]).astype(np.float64))
            differences.append((difference / steps[position]).ravel())
    every = np.concatenate(differences) if differences else np.zeros(0)
    return {
        "litert_max_diff_steps": float(np.round(every.max(initial=0.0), 3)),
        "litert_equal_share": float(np.mean(every < 1e-3)) if every.size else 1.0,
        "litert_within_one_step_share": float(np.mean(every <= 1.0 + 1e-3)) if every.size else 1.0,
    }


def macs_report(path: Path) -> dict[str, Any]:
    from edgeport.formats.tflite.flatbuffer import builtin_names, read_model
    from edgeport.targets.tflm.macs import count_macs

    per_op = count_macs(read_model(path), builtin_names())
    return {"macs": sum(op.macs for op in per_op), "macs_per_op": {f"{op.index}:{op.op}": op.macs for op in per_op}}


class TFLMRuntime(Runtime):
    name = "tflm"
    artifact_suffixes = (".tflite",)
    description = "TFLite Micro reference kernels on the host (tflite-micro); arena, flash, MACs; not device latency"

    def requirements(self):
        from edgeport.run.requirements import python_package

        return (python_package("tflite-micro", extra="tflm", why="TFLM's reference kernels on the host"),)

    def version(self) -> str:
        from importlib.metadata import version

        return f"tflite-micro {version('tflite-micro')} (host, reference kernels; not device latency)"

    def open(self, artifact: Path, settings: RuntimeSettings) -> Session:
        return TFLMSession(artifact)

    def intermediates(self, artifact, samples, settings, names, aliases):
        """TFLM's host interpreter exposes no intermediate tensors, so the same int8 flatbuffer runs on LiteRT's
        builtin (reference) kernels with every tensor kept; `measure` says how closely TFLM's outputs agree with
        LiteRT's (litert_agreement), and the report notes where the layers came from."""
        from edgeport.formats.tflite.intermediates import litert_intermediates

        run = litert_intermediates(Path(artifact), samples, settings.threads, names, aliases)
        return replace(run, notes=(*run.notes, INTERMEDIATES_NOTE))

    def measure(
        self, artifact: Path, settings: RuntimeSettings, samples: SampleSet, known: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """The arena and flash (measured here unless the converter already measured them for this artifact),
        MACs and agreement with LiteRT."""
        arena = {key: value for key, value in (known or {}).items() if key in ("arena_bytes", "arena_search_probes")}
        if "arena_bytes" not in arena:
            arena = self._search_arena(artifact)
        session = TFLMSession(artifact)
        try:
            agreement = litert_agreement(artifact, session, samples)
        finally:
            session.close()
        # the converter's flash is the compiled model array (arm-none-eabi-gcc); the file's size otherwise
        flash = (known or {}).get("flash_bytes", artifact.stat().st_size)
        return {**arena, "flash_bytes": flash, **macs_report(artifact), **agreement}

    @staticmethod
    def _search_arena(artifact: Path) -> dict[str, Any]:
        from edgeport.formats.tflm.arena import search_in_subprocess

        try:
            search = search_in_subprocess(artifact)
        except RuntimeError as exc:
            raise RuntimeFailure(f"{exc} ({artifact})") from None
        if search.arena_bytes is None:
            op = f" at op {search.failed_op} (node {search.failed_node})" if search.failed_op else ""
            raise RuntimeFailure(f"TFLite Micro cannot run {artifact}{op}: {search.failure}")
        return {"arena_bytes": search.arena_bytes, "arena_search_probes": search.probes}
