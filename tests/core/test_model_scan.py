"""The pre-load scan: a model whose ops touch files, writers, Python or unknown code is refused before any of it
runs, and runs with --trust-model (the report says so). The SavedModel's own saver is not a finding."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edgeport.model.scan import (
    ASSET_OUTSIDE,
    DATASET,
    DEBUG,
    EMBEDDED_GRAPH,
    FILE_SYSTEM,
    IMMUTABLE_CONST,
    PRINT_TO_FILE,
    PY_FUNC,
    TOP_LEVEL,
    UNKNOWN,
    UNREVIEWED,
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
    from edgeport.model.saved_model_proto import read_saved_model_proto

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


# --- issue 21: ways to read and write files the deny-list missed, and TF1 models it refused ---------------------


def _strace_cli(log: Path, *args) -> subprocess.CompletedProcess:
    """`edgeport ARGS` under strace: every file any of its processes opens is in `log`."""
    assert shutil.which("strace"), "strace is not installed: `make test` installs it (make test-programs)"
    # --seccomp-bpf: the kernel stops the processes only at the traced calls (without it every system call
    # of a Python start-up stops twice, and a refused run took 30 s)
    command = ["strace", "-f", "--seccomp-bpf", "-qq", "-e", "trace=open,openat,openat2", "-o", str(log)]
    return subprocess.run(
        [*command, sys.executable, "-m", "edgeport", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _text_table(filename):
    t = tf()
    table = t.raw_ops.HashTableV2(key_dtype=t.string, value_dtype=t.int64, shared_name="edgeport_issue21")
    return t.raw_ops.InitializeTableFromTextFileV2(table_handle=table, filename=filename, key_index=-2, value_index=-1)


def _save_dataset_from_graph(path: Path, secret: Path, written: Path, computed: bool) -> Path:
    """A serving function running a dataset rebuilt from a serialized graph: it reads `secret`, writes `written`.
    `computed`: the graph's bytes pass through a StringJoin on the input (else Grappler folds the op, and it fails)."""
    t = tf()

    def copy(line):
        with t.control_dependencies([t.io.write_file(str(written), line)]):
            return t.identity(line)

    serialized = t.data.TextLineDataset([str(secret)]).map(copy)._as_serialized_graph().numpy()  # noqa: SLF001 - the graph DatasetFromGraph takes

    def body(x):
        graph_def = t.constant(serialized)
        if computed:
            graph_def = t.strings.join([graph_def, t.strings.substr(t.strings.as_string(x[0, 0]), 0, 0)])
        variant = t.raw_ops.DatasetFromGraph(graph_def=graph_def)
        dataset = t.data.experimental.from_variant(variant, t.TensorSpec([], t.string))
        return dataset.reduce(t.constant(0, t.int64), lambda count, _: count + 1)

    return _save(path, body)


def _save_tf1_saver_that_writes(path: Path, written: Path) -> Path:
    """A TF1 Builder graph whose saver's restore op also runs a SaveV2 to `written` (a path the model chose)."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.float32, [None, 4], name="x")
        w = t.compat.v1.get_variable("w", [4], initializer=t.compat.v1.ones_initializer())
        y = t.identity(x * w + 1.0, name="y")
        saver = t.compat.v1.train.Saver()
        save = t.raw_ops.SaveV2(prefix=str(written), tensor_names=["c"], shape_and_slices=[""], tensors=[t.ones([1])])
        graph.get_operation_by_name(saver.saver_def.restore_op_name)._add_control_input(save)  # noqa: SLF001
        with t.compat.v1.Session(graph=graph) as session:
            session.run(t.compat.v1.global_variables_initializer())
            builder = t.compat.v1.saved_model.Builder(str(path))
            signature = t.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(
                session, ["serve"], signature_def_map={"serving_default": signature}, saver=saver
            )
            builder.save()
    return path


def _save_tf1_reference_variables(path: Path) -> Path:
    """A TF1 training script's export: reference variables (VariableV2), its own tf.train.Saver (`save/`) and the
    Builder's (`save_1/`), two MetaGraphs."""
    t = tf()
    graph = t.Graph()
    with graph.as_default():
        x = t.compat.v1.placeholder(t.float32, [None, 3], name="x")
        w = t.compat.v1.Variable(t.compat.v1.random_normal([3, 4], seed=2), name="w", use_resource=False)
        b = t.compat.v1.Variable(t.fill([4], 0.1), name="b", use_resource=False)
        y = t.nn.tanh(t.matmul(x, w) + b, name="y")
        t.compat.v1.train.Saver()  # the training script's checkpoints
        with t.compat.v1.Session(graph=graph) as session:
            session.run(t.compat.v1.global_variables_initializer())
            builder = t.compat.v1.saved_model.Builder(str(path))
            signature = t.compat.v1.saved_model.predict_signature_def({"x": x}, {"y": y})
            builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
            builder.add_meta_graph(["eval"], signature_def_map={"serving_default": signature})
            builder.save()
    return path


def _save_lookup(path: Path, vocabulary: Path) -> Path:
    import keras

    text = keras.Input((1,), dtype="string")
    keras.Model(text, keras.layers.StringLookup(vocabulary=str(vocabulary))(text)).export(str(path), verbose=False)
    return path


def _asset_symlinked_outside(path: Path, vocabulary: Path, secret: Path) -> Path:
    _save_lookup(path, vocabulary)
    (path / "assets" / vocabulary.name).unlink()
    (path / "assets" / vocabulary.name).symlink_to(secret)
    return path


def _asset_named_outside(path: Path, vocabulary: Path, secret: Path) -> Path:
    """The asset's recorded filename climbs out of assets/ and the model folder with `../`."""
    from tensorflow.core.protobuf import saved_model_pb2

    _save_lookup(path, vocabulary)
    proto = saved_model_pb2.SavedModel()
    proto.ParseFromString((path / "saved_model.pb").read_bytes())
    climb = Path(*[".."] * 2) / secret.relative_to(path.parent)
    proto.meta_graphs[0].asset_file_def[0].filename = climb.as_posix()
    (path / "saved_model.pb").write_bytes(proto.SerializeToString())
    return path


@pytest.fixture(scope="module")
def escapes(tmp_path_factory) -> dict[str, tuple[Path, Path, Path, tuple[str, str, str]]]:
    """name -> (model, the file it would read, the file it would write, (op, family, where fragment))."""
    base = tmp_path_factory.mktemp("escapes")
    secret = base / "secret.txt"
    secret.write_text("alpha\nbeta\n")
    vocabulary = base / "vocabulary.txt"
    vocabulary.write_text("a\nb\n")
    out = base / "out"
    out.mkdir()
    t = tf()
    join = lambda x: _text_table(t.strings.join([str(secret.parent) + "/", secret.name]))  # noqa: E731
    identity = lambda x: _text_table(t.identity(t.constant(str(secret))))  # noqa: E731
    models = {
        "dataset_from_graph": (
            _save_dataset_from_graph(base / "dataset_from_graph", secret, out / "copied.txt", computed=True),
            ("DatasetFromGraph", EMBEDDED_GRAPH, ""),
        ),
        "dataset_from_graph_constant": (  # scanned inside: its dataset reads secret, its map function writes
            _save_dataset_from_graph(base / "dataset_from_graph_constant", secret, out / "copied.txt", computed=False),
            ("WriteFile", FILE_SYSTEM, "> DatasetFromGraph"),
        ),
        "restore_writes": (
            _save_tf1_saver_that_writes(base / "restore_writes", out / "ckpt"),
            ("SaveV2", WRITER, TOP_LEVEL),
        ),
        "joined_table_path": (
            _save(base / "joined_table_path", join),
            ("InitializeTableFromTextFileV2", FILE_SYSTEM, ""),
        ),
        "identity_table_path": (
            _save(base / "identity_table_path", identity),
            ("InitializeTableFromTextFileV2", FILE_SYSTEM, ""),
        ),
        "asset_symlink": (
            _asset_symlinked_outside(base / "asset_symlink", vocabulary, secret),
            ("asset", ASSET_OUTSIDE, "asset"),  # named by asset_file_def, or an entry of assets/
        ),
        "asset_dotdot": (
            _asset_named_outside(base / "asset_dotdot", vocabulary, secret),
            ("asset", ASSET_OUTSIDE, "asset_file_def"),
        ),
    }
    assert not list(out.iterdir())
    return {name: (path, secret, out, expected) for name, (path, expected) in models.items()}


ESCAPES = (
    "dataset_from_graph",
    "restore_writes",
    "joined_table_path",
    "identity_table_path",
    "asset_symlink",
    "asset_dotdot",
)


@pytest.mark.parametrize("name", [*ESCAPES, "dataset_from_graph_constant"])
def test_each_escape_is_found(escapes, name):
    path, _, _, (op, family, where) = escapes[name]
    findings = scan_saved_model(path).findings
    assert any(f.op == op and f.family == family and where in f.where for f in findings), findings


@pytest.mark.parametrize("name", ESCAPES)
def test_each_escape_is_refused_before_any_file_is_opened_and_runs_when_trusted(escapes, name, tmp_path):
    path, secret, out, _ = escapes[name]
    for left in out.iterdir():  # an earlier trusted run's
        left.unlink()
    log = tmp_path / "strace.log"
    refused = _strace_cli(log, "convert", path, "-t", "onnx", "-o", tmp_path / "refused", "--no-bench", "--no-history")
    _assert_refused(refused, *(["resolves to", str(secret)] if name.startswith("asset") else []))
    assert str(secret) not in log.read_text() and not list(out.iterdir()), name  # no process opened it
    assert not (tmp_path / "refused").exists()

    trusted = run_cli(
        "convert", path, "-t", "onnx", "-o", tmp_path / "out", "--no-bench", "--no-history", "--trust-model"
    )
    assert trusted.returncode != 2, trusted.stderr  # past the scan; ONNX may not take what the model computes
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["model"]["scan"]["trusted"] and not report["model"]["scan"]["clean"]
    if name in ("dataset_from_graph", "restore_writes"):
        assert list(out.iterdir()), name  # the model's code ran, as agreed


def test_inspect_runs_no_saver_it_calls_unclean(escapes):
    path, _, out, _ = escapes["restore_writes"]
    info = json.loads(run_cli("inspect", path, "--json").stdout)
    assert info["loaded"] is False and [f["op"] for f in info["scan"]["findings"]] == ["SaveV2"]
    assert not list(out.iterdir())


def test_the_v1_session_restores_variables_without_running_the_saver(escapes):
    import numpy as np

    from edgeport.model.savedmodel import load_model

    path, _, out, _ = escapes["restore_writes"]
    model = load_model(path, force_v1=True)  # trusted in effect: the scan is the caller's
    outputs = model.reference([{"x": np.ones([1, 4], np.float32)}])[0]
    assert np.allclose(outputs["y"], 2.0)  # w restored from variables/: ones
    assert not list(out.iterdir())  # the restore op, which would have written, never ran


def test_a_tf1_model_with_reference_variables_and_its_savers_converts_with_no_flag(tmp_path):
    import numpy as np

    from edgeport.model.savedmodel import load_model

    path = _save_tf1_reference_variables(tmp_path / "tf1_reference")
    assert scan_saved_model(path).clean
    tf2, v1 = load_model(path), load_model(path, force_v1=True)
    feed = {"x": np.random.default_rng(0).random([2, 3], np.float32)}
    assert np.allclose(tf2.reference([feed])[0]["y"], v1.reference([feed])[0]["y"])
    result = run_cli(
        "convert", path, "-t", "tflite", "-t", "onnx", "-o", tmp_path / "out", "--no-bench", "--no-history"
    )
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["verdicts"] == {"tflite": "passed", "onnx": "passed"}, report["verdicts"]
    assert report["model"]["scan"]["clean"]


def test_unreviewed_stateful_ops_and_functions_they_name_are_found(models):
    from edgeport.model.saved_model_proto import read_saved_model_proto

    proto = read_saved_model_proto(models["multi"])
    function = next(f for f in proto.meta_graphs[0].graph_def.library.function if "serve" in f.signature.name)
    function.node_def.add(name="send", op="_Send")  # stateful, not reviewed: may reach another host
    call = function.node_def.add(name="call", op="PartitionedCall")
    call.attr["f"].func.name = "EdgeportNoSuchFunction"
    findings = {(f.op, f.family) for f in scan_proto(proto).findings}
    assert findings == {("_Send", UNREVIEWED), ("PartitionedCall", UNKNOWN)}, findings


def test_the_allow_list_holds_only_stateful_ops_tensorflow_knows():
    from tensorflow.python.framework import op_def_registry

    from edgeport.model.scan import ALLOWED_STATEFUL, FAMILY_OF

    unknown = sorted(op for op in ALLOWED_STATEFUL if op_def_registry.get(op) is None)
    stateless = sorted(op for op in ALLOWED_STATEFUL if op not in unknown and not op_def_registry.get(op).is_stateful)
    assert not unknown and not stateless and not ALLOWED_STATEFUL & set(FAMILY_OF), (unknown, stateless)
