"""The pre-load scan: a model whose ops touch files, writers, Python or unknown code is refused before any of it
runs, and runs with --trust-model (the report says so). The SavedModel's own saver is not a finding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgeport.model.scan import (
    DATASET,
    DEBUG,
    FILE_SYSTEM,
    IMMUTABLE_CONST,
    PRINT_TO_FILE,
    PY_FUNC,
    TOP_LEVEL,
    UNKNOWN,
    WRITER,
    scan_proto,
    scan_saved_model,
)
from edgeport_testing import run_cli, save_multi_io, tf

SERVING_CASES = (
    "write_file",
    "read_file",
    "matching_files",
    "text_file_table",
    "print_to_file",
    "immutable_const",
    "numpy_function",
    "py_function",
    "summary_writer",
    "save_v2",
    "tfrecord_dataset",
    "while_body",
    "debug_identity",
)


def _save(path: Path, body) -> Path:
    """A tf.Module SavedModel whose serving function runs `body(x)` for its side effect, then returns x + 1."""
    t = tf()

    class Flagged(t.Module):
        @t.function(input_signature=[t.TensorSpec([None, 4], t.float32, name="x")])
        def serve(self, x):
            effect = body(x)
            with t.control_dependencies([e for e in t.nest.flatten(effect) if e is not None]):
                return {"y": x + 1.0}

    module = Flagged()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _bodies(sandbox: Path):
    """name -> (what the serving function does, (op, family, function name fragment) the scan must report)."""
    t = tf()

    def summary(x):
        writer = t.raw_ops.SummaryWriter(shared_name="edgeport_test")
        created = t.raw_ops.CreateSummaryFileWriter(
            writer=writer, logdir=str(sandbox / "logs"), max_queue=1, flush_millis=0, filename_suffix=".v2"
        )
        with t.control_dependencies([created]):
            return t.raw_ops.WriteScalarSummary(writer=writer, step=0, tag="s", value=t.reduce_sum(x))

    def tfrecords(x):
        return t.data.TFRecordDataset([str(sandbox / "data.tfrecord")]).reduce(t.constant(0, t.int64), lambda a, _: a)

    def while_loop(x):
        def body(i):
            with t.control_dependencies([t.io.write_file(str(sandbox / "while.txt"), t.strings.as_string(i))]):
                return i + 1

        return t.while_loop(lambda i: i < 3, body, [t.constant(0)])

    def text_file_table(x):
        table = t.raw_ops.HashTableV2(key_dtype=t.string, value_dtype=t.int64, shared_name="edgeport_test")
        return t.raw_ops.InitializeTableFromTextFileV2(
            table_handle=table, filename="/etc/hostname", key_index=-2, value_index=-1
        )

    return {
        "write_file": (lambda x: t.io.write_file(str(sandbox / "written.txt"), "x"), ("WriteFile", FILE_SYSTEM, "")),
        "read_file": (lambda x: t.io.read_file("/etc/hostname"), ("ReadFile", FILE_SYSTEM, "")),
        "matching_files": (lambda x: t.io.matching_files("/etc/*"), ("MatchingFiles", FILE_SYSTEM, "")),
        "text_file_table": (text_file_table, ("InitializeTableFromTextFileV2", FILE_SYSTEM, "")),
        "print_to_file": (
            lambda x: t.print(x, output_stream=f"file://{sandbox / 'printed.txt'}"),
            ("PrintV2", PRINT_TO_FILE, ""),
        ),
        "immutable_const": (
            lambda x: t.raw_ops.ImmutableConst(dtype=t.float32, shape=[4], memory_region_name=str(sandbox / "m")),
            ("ImmutableConst", IMMUTABLE_CONST, ""),
        ),
        "numpy_function": (lambda x: t.numpy_function(lambda a: a, [x], t.float32), ("PyFunc", PY_FUNC, "")),
        "py_function": (lambda x: t.py_function(lambda a: a, [x], t.float32), ("EagerPyFunc", PY_FUNC, "")),
        "summary_writer": (summary, ("CreateSummaryFileWriter", WRITER, "")),
        "save_v2": (
            lambda x: t.raw_ops.SaveV2(
                prefix=str(sandbox / "ckpt"), tensor_names=["x"], shape_and_slices=[""], tensors=[x]
            ),
            ("SaveV2", WRITER, ""),
        ),
        "tfrecord_dataset": (tfrecords, ("TFRecordDataset", DATASET, "read_one_file")),
        "while_body": (while_loop, ("WriteFile", FILE_SYSTEM, "while_body")),
        "debug_identity": (
            lambda x: t.raw_ops.DebugIdentityV2(input=x, debug_urls=[f"file://{sandbox / 'debug'}"]),
            ("DebugIdentityV2", DEBUG, ""),
        ),
    }


def _save_unknown_op(path: Path) -> Path:
    """A SavedModel whose saved_model.pb was edited to call an op no TensorFlow registers (a custom op library)."""
    from tensorflow.core.protobuf import saved_model_pb2

    save_multi_io(path)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    node = next(n for f in proto.meta_graphs[0].graph_def.library.function for n in f.node_def if n.op == "Softmax")
    node.op = "EdgeportTestOnlyOp"
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    return path


def _save_tf1(path: Path, write_to: Path | None) -> Path:
    """A TF1 Builder graph with a Saver; with `write_to`, its main_op (run by the v1 loader) writes that file."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.float32, [None, 4], name="x")
        w = t.compat.v1.get_variable("w", [4], initializer=t.compat.v1.ones_initializer())
        y = t.identity(x * w + 1.0, name="y")
        main_op = t.io.write_file(str(write_to), "loaded") if write_to else None
        with t.compat.v1.Session(graph=graph) as session:
            session.run(t.compat.v1.global_variables_initializer())
            builder = t.compat.v1.saved_model.Builder(str(path))
            signature = t.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={"serving_default": signature},
                main_op=main_op,
                saver=t.compat.v1.train.Saver(),
            )
            builder.save()
    return path


def _save_tf1_vocabulary(path: Path, vocabulary: Path) -> Path:
    """A TF1 Builder graph with a text-file lookup table on its asset (the v1 loader feeds the asset's path)."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.string, [None], name="x")
        initializer = t.compat.v1.lookup.TextFileInitializer(str(vocabulary), t.string, -2, t.int64, -1)
        y = t.identity(t.compat.v1.lookup.StaticHashTable(initializer, -1).lookup(x), name="y")
        with t.compat.v1.Session(graph=graph) as session:
            session.run(t.compat.v1.tables_initializer())
            builder = t.compat.v1.saved_model.Builder(str(path))
            signature = t.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session,
                ["serve"],
                signature_def_map={"serving_default": signature},
                assets_collection=t.compat.v1.get_collection(t.compat.v1.GraphKeys.ASSET_FILEPATHS),
                main_op=t.compat.v1.tables_initializer(),
            )
            builder.save()
    return path


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """Where the flagged models would write; nothing may appear here unless a run trusts the model."""
    return tmp_path_factory.mktemp("sandbox")


@pytest.fixture(scope="module")
def flagged(tmp_path_factory, sandbox) -> dict[str, tuple[Path, tuple[str, str, str]]]:
    base = tmp_path_factory.mktemp("flagged")
    bodies = _bodies(sandbox)
    assert tuple(bodies) == SERVING_CASES
    models = {name: (_save(base / name, body), expected) for name, (body, expected) in bodies.items()}
    models["unknown_op"] = (_save_unknown_op(base / "unknown_op"), ("EdgeportTestOnlyOp", UNKNOWN, ""))
    models["tf1_main_op"] = (_save_tf1(base / "tf1_main_op", sandbox / "loaded.txt"), ("WriteFile", FILE_SYSTEM, ""))
    assert not list(sandbox.iterdir())  # saving traced the functions; it ran none of them
    return models


@pytest.mark.parametrize("name", [*SERVING_CASES, "unknown_op", "tf1_main_op"])
def test_each_family_is_found_with_its_function(flagged, name):
    path, (op, family, where) = flagged[name]
    findings = scan_saved_model(path).findings
    assert any(f.op == op and f.family == family and where in f.where for f in findings), findings
    if name == "tf1_main_op":
        assert [f.where for f in findings] == [TOP_LEVEL]  # the v1 path's graph; its Saver is not a finding


def test_normal_models_and_their_savers_scan_clean(models, tmp_path):
    import keras

    t = tf()
    sequential = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    sequential.export(str(tmp_path / "exported"), verbose=False)
    t.saved_model.save(sequential, str(tmp_path / "saved"))
    vocabulary = tmp_path / "vocabulary.txt"
    vocabulary.write_text("a\nb\n")
    text = keras.Input((1,), dtype="string")
    keras.Model(text, keras.layers.StringLookup(vocabulary=str(vocabulary))(text)).export(
        str(tmp_path / "lookup"), verbose=False
    )  # a vocabulary file among the assets: read by its table initializer, not a finding
    _save(tmp_path / "print_to_stderr", t.print)
    _save_tf1(tmp_path / "tf1_saver", None)
    _save_tf1_vocabulary(tmp_path / "tf1_lookup", vocabulary)
    names = ("exported", "saved", "lookup", "print_to_stderr", "tf1_saver", "tf1_lookup")
    for path in (tmp_path / name for name in names):
        result = scan_saved_model(path)
        assert result.clean and result.nodes > 0, (path.name, result.findings)
    for name in ("cnn", "multi", "tf1", "strings"):
        assert scan_saved_model(models[name]).clean, name


def test_the_saver_is_known_by_its_saver_def_not_by_names(models):
    from edgeport.model.savedmodel import read_saved_model_proto

    proto = read_saved_model_proto(models["multi"])
    save_function = next(
        f for f in proto.meta_graphs[0].graph_def.library.function if "_traced_save" in f.signature.name
    )
    save_function.node_def.add(name="hidden", op="WriteFile")  # anything but its checkpoint ops is a finding
    assert [(f.op, f.where) for f in scan_proto(proto).findings] == [("WriteFile", save_function.signature.name)]
    proto.meta_graphs[0].ClearField("saver_def")  # without a saver_def, its checkpoint ops are ordinary ops
    assert {"SaveV2", "MergeV2Checkpoints", "RestoreV2"} <= {f.op for f in scan_proto(proto).findings}


def _assert_refused(result, *fragments: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeport: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0] and "Traceback" not in result.stderr, result.stderr
    for fragment in ("--trust-model", *fragments):
        assert fragment in errors[0], errors[0]
    return errors[0]


def test_convert_refuses_before_any_op_runs_and_runs_when_trusted(flagged, sandbox, tmp_path):
    path, _ = flagged["write_file"]
    written = sandbox / "written.txt"
    refused = run_cli("convert", path, "-t", "onnx", "-o", tmp_path / "out", "--no-bench", "--no-history")
    line = _assert_refused(refused, "file-system ops: WriteFile in __inference_", "(node WriteFile)")
    assert not written.exists() and not (tmp_path / "out").exists(), line

    trusted = run_cli(
        "convert", path, "-t", "onnx", "-o", tmp_path / "out", "--no-bench", "--no-history", "--trust-model"
    )
    assert trusted.returncode == 0, trusted.stderr
    assert written.exists()  # the reference outputs ran the model's code, as agreed
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    scan = report["model"]["scan"]
    assert scan["trusted"] and [f["op"] for f in scan["findings"]] == ["WriteFile"]
    assert any("--trust-model" in note and "WriteFile" in note for note in report["model"]["notes"])
    assert any("--trust-model" in warning for warning in report["warnings"])
    written.unlink()

    artifact = tmp_path / "out" / "onnx" / "model.onnx"  # check and bench load the model too: the same refusal
    _assert_refused(run_cli("check", artifact, "--model", path), "WriteFile")
    assert not written.exists()


def test_the_v1_loader_never_runs_a_flagged_main_op(flagged, sandbox, tmp_path):
    import edgeport
    from edgeport.errors import UntrustedModel

    path, _ = flagged["tf1_main_op"]
    with pytest.raises(UntrustedModel, match=r"WriteFile in the top-level graph \(node WriteFile\)"):
        edgeport.convert(path, targets=["onnx"], output=tmp_path / "out", bench=False)
    assert not (sandbox / "loaded.txt").exists() and not (tmp_path / "out").exists()


def test_inspect_shows_the_scan_without_loading_a_flagged_model(flagged, sandbox):
    path, _ = flagged["tf1_main_op"]
    result = run_cli("inspect", path, "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["loaded"] is False and not info["scan"]["clean"] and "--trust-model" in info["notes"][0]
    assert info["scan"]["findings"] == [
        {"op": "WriteFile", "family": FILE_SYSTEM, "where": TOP_LEVEL, "node": "WriteFile"}
    ]
    assert not (sandbox / "loaded.txt").exists()


def test_trust_model_in_the_config(tmp_path):
    from edgeport.cli.commands import build_request
    from edgeport.cli.config import load_config
    from edgeport.errors import UsageError
    from edgeport.model.samples import SampleRequest

    config = tmp_path / "edgeport.toml"
    config.write_text('model = "sm"\ntargets = ["onnx"]\ntrust_model = true\n')
    arguments = {
        "model": None,
        "targets": (),
        "output": tmp_path / "out",
        "samples": SampleRequest(),
        "calibration": None,
        "signature": None,
        "threads": None,
        "jobs": None,
        "shared_options": {},
        "backend": None,
        "protocol_overrides": {},
        "check": True,
        "bench": False,
        "baseline": False,
        "strict": None,
        "legacy": False,
    }
    assert build_request(config_path=config, **arguments).trust_model
    config.write_text('model = "sm"\ntargets = ["onnx"]\n')
    assert not build_request(config_path=config, **arguments).trust_model
    assert build_request(config_path=config, trust_model=True, **arguments).trust_model
    config.write_text('model = "sm"\ntrust_model = "yes"\n')
    with pytest.raises(UsageError, match="trust_model must be a bool"):
        load_config(config)
