"""A third-party plug-in, as another package would ship it: a frozen-graph converter and its runtime.

`frozengraph` writes the run's frozen GraphDef (the one every converter shares) and `graphdef` runs it in a
TensorFlow v1 session. `crashing` kills its own process, to prove a crash fails only its target. The `hold_*`
options hold a stage open for that many seconds (`-O hold_check=60`), so fault tests can kill a run inside it;
`hold_memory_mb` makes the conversion hold that much memory (the --max-memory test).
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from edgeport.contracts import Artifact, Converter, Runtime, Session, option


@dataclass(frozen=True)
class FrozenGraphOptions:
    as_text: bool = option(False, flag="--as-text", help="Also write the GraphDef as text (model.pbtxt).")
    note: str = ""  # a plain field: settable with -O note=..., listed in --help under frozengraph
    static_shapes: bool = False  # bake the calibration samples' shapes into the inputs, as some converters do
    hold_convert: float = 0.0  # seconds the conversion waits after writing its files
    hold_check: float = 0.0  # seconds the runtime waits before the check runs the artifact (kept in hold.json)
    hold_bench: float = 0.0  # seconds the runtime waits before the benchmark
    hold_memory_mb: int = 0  # MB the conversion allocates and touches, 64 MB at a time, before writing its files


class FrozenGraphConverter(Converter):
    name = "frozengraph"
    default_runtime = "graphdef"
    Options = FrozenGraphOptions

    def convert(self, job):
        held = [b"\x01" * (64 << 20) for _ in range(job.options.hold_memory_mb // 64)]  # written: resident
        time.sleep(1.0 if held else 0.0)  # long enough for a memory watch to see it
        frozen = job.model.frozen
        graph_def = frozen.graph_def
        if job.options.static_shapes:
            graph_def = type(graph_def).FromString(graph_def.SerializeToString())
            inputs = {tensor.split(":")[0]: name for name, tensor in frozen.input_tensors.items()}
            for node in graph_def.node:
                if node.name in inputs:
                    shape = job.calibration.arrays[inputs[node.name]].shape[1:]
                    node.attr["shape"].shape.Clear()
                    for dim in shape:
                        node.attr["shape"].shape.dim.add(size=int(dim))
        (job.workdir / "model.pb").write_bytes(graph_def.SerializeToString())
        (job.workdir / "io.json").write_text(
            json.dumps({"inputs": frozen.input_tensors, "outputs": frozen.output_tensors})
        )
        files = ("model.pb", "io.json")
        if job.options.as_text:
            (job.workdir / "model.pbtxt").write_text(str(frozen.graph_def))
            files += ("model.pbtxt",)
        if job.options.hold_check or job.options.hold_bench:
            (job.workdir / "hold.json").write_text(
                json.dumps({"check": job.options.hold_check, "bench": job.options.hold_bench})
            )
            files += ("hold.json",)
        time.sleep(job.options.hold_convert)
        return Artifact(
            main_file="model.pb",
            precision="fp32",
            runtime="graphdef",
            files=files,
            notes=(f"note: {job.options.note}",) if job.options.note else (),
        )


class _GraphSession(Session):
    def __init__(self, path: Path):
        from edgeport.model.tf_quiet import import_tensorflow

        tf = import_tensorflow()
        io = json.loads(path.with_name("io.json").read_text())
        graph_def = tf.compat.v1.GraphDef.FromString(path.read_bytes())
        self._graph = tf.Graph()
        with self._graph.as_default():
            tf.compat.v1.import_graph_def(graph_def, name="")
        self._session = tf.compat.v1.Session(graph=self._graph)
        self._inputs, self._outputs = io["inputs"], io["outputs"]

    def run(self, feeds):
        return self._session.run(self._outputs, {self._inputs[name]: value for name, value in feeds.items()})


class GraphDefRuntime(Runtime):
    name = "graphdef"
    artifact_suffixes = (".pb",)

    def version(self):
        return "graphdef-runner 0.1"

    def open(self, artifact, settings):
        return _GraphSession(Path(artifact))

    def infer(self, artifact, samples, settings):
        _hold(Path(artifact), "check")
        return super().infer(artifact, samples, settings)

    def benchmark(self, artifact, samples, settings, protocol):
        _hold(Path(artifact), "bench")
        return super().benchmark(artifact, samples, settings, protocol)


def _hold(artifact: Path, stage: str) -> None:
    hold = artifact.with_name("hold.json")
    if hold.is_file():
        seconds = json.loads(hold.read_text())[stage]
        print(f"holding {stage} for {seconds}s", flush=True)  # into the stage's log: the test knows it is here
        time.sleep(seconds)


class CrashingConverter(Converter):
    name = "crashing"
    default_runtime = "graphdef"

    def convert(self, job):
        os.kill(os.getpid(), signal.SIGSEGV)


HANG_PIDS_ENV = "EDGEPORT_FAKE_HANG_PIDS"
HANG_MARKER = "hang.txt"  # beside model.pb: the stage the `sleepy` runtime hangs in (check or bench)


def hang() -> None:
    """Never return: start a child that sleeps too, append "PID CHILD_PID" to $EDGEPORT_FAKE_HANG_PIDS, sleep."""
    import subprocess

    child = subprocess.Popen(["sleep", "3600"])
    record = os.environ.get(HANG_PIDS_ENV)
    if record:
        with open(record, "a", encoding="ascii") as pids:
            pids.write(f"{os.getpid()} {child.pid}\n")
    time.sleep(3600)


class SleepyConverter(Converter):
    """Hangs, to prove a hang fails only its target: `sleepy:convert` never finishes converting; `sleepy:check`
    and `sleepy:bench` write the SavedModel's outputs on the calibration samples (the check samples, unless
    --calibration is given), and their runtime `sleepy` then never finishes checking (infer) or benchmarking
    them; otherwise it replays those outputs, without TensorFlow. Each hang leaves a child process behind it,
    unless its stage is stopped whole."""

    name = "sleepy"
    variants = ("convert", "check", "bench")
    default_runtime = "sleepy"

    def convert(self, job):
        import pickle

        if job.target.variant == "convert":
            hang()
        outputs = job.model.reference(job.calibration.feeds())
        (job.workdir / "outputs.pkl").write_bytes(pickle.dumps(outputs))
        (job.workdir / HANG_MARKER).write_text(job.target.variant)
        return Artifact(main_file="outputs.pkl", precision="fp32", runtime="sleepy", files=("outputs.pkl", HANG_MARKER))


class SleepyRuntime(Runtime):
    name = "sleepy"

    def version(self):
        return "sleepy 0.1"

    def infer(self, artifact, samples, settings):
        _hang_in(Path(artifact), "check")
        return pickle_outputs(Path(artifact))[: samples.count]

    def open(self, artifact, settings):
        return _Replay(pickle_outputs(Path(artifact)))

    def benchmark(self, artifact, samples, settings, protocol):
        _hang_in(Path(artifact), "bench")
        return super().benchmark(artifact, samples, settings, protocol)


def pickle_outputs(path: Path):
    import pickle

    return pickle.loads(path.read_bytes())


class _Replay(Session):
    def __init__(self, outputs):
        self._outputs = outputs

    def run(self, feeds):
        return self._outputs[0]


def _hang_in(artifact: Path, stage: str) -> None:
    marker = artifact.with_name(HANG_MARKER)
    if marker.is_file() and marker.read_text().strip() == stage:
        hang()
