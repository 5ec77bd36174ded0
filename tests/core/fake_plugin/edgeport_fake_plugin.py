"""A third-party plug-in, as another package would ship it: a frozen-graph converter and its runtime.

`frozengraph` writes the run's frozen GraphDef (the one every converter shares) and `graphdef` runs it in a
TensorFlow v1 session. `crashing` kills its own process, to prove a crash fails only its target.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from edgeport.contracts import Artifact, Converter, Runtime, Session, option


@dataclass(frozen=True)
class FrozenGraphOptions:
    as_text: bool = option(False, flag="--as-text", help="Also write the GraphDef as text (model.pbtxt).")
    note: str = ""  # a plain field: settable with -O note=..., listed in --help under frozengraph
    static_shapes: bool = False  # bake the calibration samples' shapes into the inputs, as some converters do


class FrozenGraphConverter(Converter):
    name = "frozengraph"
    default_runtime = "graphdef"
    Options = FrozenGraphOptions

    def convert(self, job):
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


class CrashingConverter(Converter):
    name = "crashing"
    default_runtime = "graphdef"

    def convert(self, job):
        os.kill(os.getpid(), signal.SIGSEGV)
