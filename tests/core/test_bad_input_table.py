"""Bad input, table-driven: each case's exit code, one `edgeport: error:` line on stderr and no traceback, and
the output folder's exact state afterwards (a refused run creates no output folder and leaves a given one as
it was).

Cases are grouped by where they are caught: the command line and the config (before TensorFlow), the
SavedModel on disk, the data, and the reports `compare`/`--baseline`/`check` read. Each is one real CLI run.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from edgeport_testing import ROOT, run_cli, save_dynamic_sum, save_multi_io, tf


@dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[dict], list]  # fixtures -> CLI arguments
    code: int
    fragments: tuple[str, ...]
    out: str = "absent"  # "absent": the run's -o folder must not exist afterwards; "untouched": as it was;
    # "logs": the model started loading, so only edgeport's bookkeeping and the loader's log say why it failed
    untouched: tuple[str, ...] = ()  # fixtures (files) whose bytes, and whose folder's listing, must not change


def _convert(*extra, model="model"):
    return lambda f: ["convert", f[model], "-t", "tflite", "-o", f["out"], "--no-bench", *extra]


def _config(text: str):
    def args(f):
        path = f["tmp"] / "edgeport.toml"
        path.write_text(text.format(model=f["model"]))
        return ["convert", "--config", path, "-o", f["out"]]

    return args


def _data(name: str, *extra):
    return lambda f: ["convert", f["model"], "-t", "tflite", "-o", f["out"], "--no-bench", "--data", f[name], *extra]


def _gate(line: str):
    return _config(f'model = "{{model}}"\ntargets = ["tflite"]\n[target.tflite]\n{line}\n')


LONG = "n" * 300  # one path component over NAME_MAX (255 bytes): ENAMETOOLONG wherever the system meets it


CASES = [
    # ------------------------------------------------------------ the command line
    Case("no-targets", lambda f: ["convert", f["model"], "-o", f["out"]], 2, ("no targets",)),
    Case("no-model", lambda f: ["convert", "-t", "tflite", "-o", f["out"]], 2, ("no model",)),
    Case("unknown-target", _convert("-t", "coreml"), 2, ("unknown target 'coreml'", "known targets")),
    Case("unknown-variant", _convert("-t", "tflite:int4"), 2, ("no variant 'int4'",)),
    Case("unknown-runtime", _convert("-t", "tflite@nope"), 2, ("unknown runtime 'nope'",)),
    Case("threads-0", _convert("--threads", "0"), 2, ("--threads", "convert --help`")),
    Case("samples-0", _convert("--samples", "0"), 2, ("--samples",)),
    Case("unknown-flag", _convert("--colour"), 2, ("No such option", "--colour")),
    Case("unknown-command", lambda f: ["transmogrify"], 2, ("No such command",)),
    Case("range-syntax", _convert("--input-range", "features"), 2, ("expected NAME=LO:HI",)),
    Case("range-reversed", _convert("--input-range", "features=5:1"), 2, ("LO < HI",)),
    Case("range-infinite", _convert("--input-range", "features=0:inf"), 2, ("finite",)),
    Case("range-not-number", _convert("--input-range", "features=a:b"), 2, ("not a number",)),
    Case("shape-syntax", _convert("--input-shape", "features=a,b"), 2, ("expected NAME=D0,D1",)),
    Case("shape-negative", _convert("--input-shape", "features=1,-4"), 2, ("expected NAME=D0,D1",)),
    Case("min-above-max-seconds", _convert("--min-seconds", "5", "--max-seconds", "1"), 2, ("--min-seconds 5",)),
    Case("max-seconds-0", _convert("--max-seconds", "0"), 2, ("--max-seconds 0",)),
    Case("option-for-no-target", _convert("--shard-size", "4MB"), 2, ("--shard-size does not apply",)),
    Case("unknown-O-key", _convert("-O", "nope=1"), 2, ("-O nope",)),
    Case("bad-size", lambda f: [*_convert()(f), "-t", "tfjs", "--shard-size", "4XB"], 2, ("not a size",)),
    Case("backend-without-backends", _convert("--backend", "webgl"), 2, ("none of the selected targets",)),
    Case("unknown-backend", lambda f: [*_convert()(f), "-t", "tfjs", "--backend", "metal"], 2, ("no backend",)),
    Case("data-missing", _convert("--data", "/nonexistent/data.npz"), 2, ("does not exist",)),
    Case("calibration-missing", _convert("--calibration", "/nonexistent/c.npz"), 2, ("does not exist",)),
    Case("baseline-missing", _convert("--baseline", "/nonexistent/report.json"), 2, ("does not exist",)),
    Case("baseline-not-json", lambda f: [*_convert()(f), "--baseline", f["not_json"]], 2, ("not a readable",)),
    Case("baseline-not-report", lambda f: [*_convert()(f), "--baseline", f["not_report"]], 2, ("not an edgeport",)),
    Case("baseline-wrong-type", lambda f: [*_convert()(f), "--baseline", f["wrong_type"]], 2, ("not a number",)),
    Case("out-is-model", lambda f: ["convert", f["model"], "-t", "tflite", "-o", f["model"]], 2, ("model",), "-"),
    Case(
        "out-inside-model",
        lambda f: ["convert", f["model"], "-t", "tflite", "-o", f["model"] / "variables" / "out"],
        2,
        ("model",),
        "-",
    ),
    # ------------------------------------------------------------ the config
    Case("config-missing", lambda f: ["convert", "--config", "/nonexistent/edgeport.toml"], 2, ("does not exist",)),
    Case("config-not-toml", _config("model = [\n"), 2, ("not valid TOML",)),
    Case("config-unknown-key", _config('model = "{model}"\ntargets = ["tflite"]\nthreds = 2\n'), 2, ("'threds'",)),
    Case("config-wrong-type", _config('model = "{model}"\ntargets = ["tflite"]\nthreads = "2"\n'), 2, ("threads",)),
    Case("config-threads-negative", _config('model = "{model}"\ntargets = ["tflite"]\nthreads = -3\n'), 2, ("-3",)),
    Case("config-jobs-0", _config('model = "{model}"\ntargets = ["tflite"]\njobs = 0\n'), 2, ("jobs",)),
    Case(
        "config-target-unknown-key",
        _config('model = "{model}"\ntargets = ["tflite"]\n[target.tflite]\ncolour = 1\n'),
        2,
        ("'colour'",),
    ),
    Case(
        "config-tolerance-typo",
        _config('model = "{model}"\ntargets = ["tflite"]\n[target.tflite]\nmin_cosinee = 0.9\n'),
        2,
        ("did you mean 'min_cosine'",),
    ),
    Case(
        "config-tolerance-not-number",
        _config('model = "{model}"\ntargets = ["tflite"]\n[target.tflite]\nmin_cosine = "high"\n'),
        2,
        ("not a number",),
    ),
    Case(
        "config-budget-typo",
        _config('model = "{model}"\ntargets = ["tflite"]\n[target.tflite]\nmax_p50_mss = 3\n'),
        2,
        ("did you mean 'max_p50_ms'",),
    ),
    # ------------------------------------------------------------ the SavedModel on disk
    Case("model-missing", _convert(model="missing"), 2, ("does not exist",)),
    Case("model-is-file", _convert(model="a_file"), 3, ("is a file",)),
    Case("model-not-savedmodel", _convert(model="empty_dir"), 3, ("is not a SavedModel",)),
    Case("model-symlink-loop", _convert(model="loop"), 3, ("symlink loop",)),
    Case("model-dangling-symlink", _convert(model="dangling"), 3, ("which does not exist",)),
    Case("model-truncated-pb", _convert(model="truncated_pb"), 3, ("corrupt or truncated", "saved_model.pb"), "logs"),
    Case(
        "model-corrupt-variables", _convert(model="corrupt_variables"), 3, ("variables", "corrupt or truncated"), "logs"
    ),
    Case("unknown-signature", _convert("--signature", "predict"), 2, ("'predict' not found",)),
    Case("io-type-on-float-target", _convert("--io-type", "int8"), 2, ("--io-type int8 does not apply",)),
    # ------------------------------------------------------------ the data
    Case("data-nan", _data("nan_npz"), 2, ("NaN/Inf", "'features'")),
    Case("data-truncated-npz", _data("truncated_npz"), 2, ("cannot be read as .npz",)),
    Case("data-random-bytes", _data("random_npz"), 2, ("cannot be read as .npz", "does not load")),
    Case("data-unknown-key", _data("colour_npz"), 2, ("'colour'", "not an input")),
    Case("data-missing-input", _data("half_npz"), 2, ("'scale' is missing",)),
    Case("data-wrong-shape", _data("shape_npz"), 2, ("'features'", "[3, 5]")),
    Case("data-complex", _data("complex_npz"), 2, ("complex64",)),
    Case("data-counts-differ", _data("counts_npz"), 2, ("different sample counts",)),
    Case("data-no-samples", _data("empty_npz"), 2, ("no samples",)),
    Case("data-npy-for-two-inputs", _data("npy"), 2, ("pass an .npz keyed by input name",)),
    Case("data-unknown-suffix", _data("csv"), 2, ("unknown format .csv",)),
    Case("range-unknown-input", _convert("--input-range", "colour=0:1"), 2, ("no input 'colour'",)),
    Case("shape-unknown-input", _convert("--input-shape", "colour=1,4"), 2, ("no input 'colour'",)),
    # ------------------------------------------------------------ other commands
    Case("compare-missing", lambda f: ["compare", "/nonexistent/a.json", f["report"]], 2, ("does not exist",), "-"),
    Case("compare-not-json", lambda f: ["compare", f["report"], f["not_json"]], 2, ("not a readable",), "-"),
    Case("compare-wrong-type", lambda f: ["compare", f["report"], f["wrong_type"]], 2, ("size_bytes",), "-"),
    Case("check-missing-artifact", lambda f: ["check", f["tmp"] / "nope.tflite", "--model", f["model"]], 2, (), "-"),
    Case(
        "check-unknown-precision",
        lambda f: ["check", f["artifact"], "--model", f["model"], "--precision", "float16"],
        2,
        ("--precision 'float16'",),
        "-",
    ),
    Case("check-no-runtime", lambda f: ["check", f["a_file"], "--model", f["model"]], 2, ("no runtime loads",), "-"),
    Case("inspect-missing", lambda f: ["inspect", f["missing"]], 2, ("does not exist",), "-"),
    Case("history-not-sqlite", lambda f: ["history", "--history", f["not_json"]], 2, (), "-"),
    # ------------------------------------------------------------ issue 21: wrong answers to bad input
    Case("shape-zero-dim", _convert("--input-shape", "features=0,4"), 2, ("--input-shape features=0,4", "1 or more")),
    Case(
        "data-zero-elements",
        lambda f: ["convert", f["dyn"], "-t", "tflite", "-o", f["out"], "--no-bench", "--data", f["zero_npz"]],
        2,
        ("'sequence'", "[3, 1, 0, 3]", "no values"),
    ),
    Case(
        "labels-out-of-range",
        lambda f: [*_data("ok_npz")(f), "--labels", f["labels_99"]],
        2,
        ("label 99", "3 classes (0..2)", "--labels"),
    ),
    Case("gate-cosine-minus-1", _gate("min_cosine = -1"), 2, ("min_cosine = -1", "(-1, 1]")),
    Case("gate-cosine-nan", _gate("min_cosine = nan"), 2, ("min_cosine = nan",)),
    Case("gate-top1-above-1", _gate("min_top1_agreement = 2.0"), 2, ("min_top1_agreement = 2.0", "0..1")),
    Case("gate-p50-negative", _gate("max_p50_ms = -5"), 2, ("max_p50_ms = -5", "above 0")),
    Case("gate-size-0", _gate("max_size_bytes = 0"), 2, ("max_size_bytes = 0", "above 0")),
    Case("gate-snr-infinite", _gate("min_snr_db = inf"), 2, ("min_snr_db = inf", "finite")),
    Case("gate-abs-error-negative", _gate("max_abs_error = -0.1"), 2, ("max_abs_error = -0.1",)),
    Case("gate-drop-nan", _gate("max_accuracy_drop = nan"), 2, ("max_accuracy_drop = nan",)),
    Case("threads-huge", _convert("--threads", "100000000000000000000"), 2, ("--threads 1000", "1 to 4096")),
    Case("jobs-huge", _convert("--jobs", "100000000000000000000"), 2, ("--jobs 1000", "1 to 256")),
    Case(
        "config-threads-huge",
        _config('model = "{model}"\ntargets = ["tflite"]\nthreads = 100000\n'),
        2,
        ("threads 100000", "1 to 4096"),
    ),
    Case(
        "check-threads-huge",
        lambda f: ["check", f["artifact"], "--model", f["model"], "--threads", "100000000000000000000"],
        2,
        ("--threads", "1 to 4096"),
        "-",
    ),
    Case("out-name-too-long", lambda f: [*_convert()(f), "-o", f["tmp"] / LONG / "out"], 2, ("-o", "300 bytes")),
    Case("model-name-too-long", _convert(model="long"), 2, ("the model", "300 bytes")),
    Case("data-name-too-long", _convert("--data", f"/tmp/{LONG}.npz"), 2, ("--data", "304 bytes")),
    Case("config-name-too-long", lambda f: ["convert", "--config", f"/tmp/{LONG}"], 2, ("--config", "300 bytes")),
    Case("config-is-directory", lambda f: ["convert", "--config", f["empty_dir"]], 2, ("is a directory", "FILE")),
    Case(
        "history-damaged",
        lambda f: ["history", "--history", f["bad_history"]],
        2,
        ("damaged", "--history"),
        "-",
        ("bad_history",),
    ),
    Case(
        "convert-history-damaged",
        lambda f: [*_convert()(f), "--history", f["bad_history"]],
        2,
        ("damaged", "--no-history"),
        "absent",
        ("bad_history",),
    ),
    Case(
        "check-other-model-inputs",
        lambda f: ["check", f["artifact"], "--model", f["dyn"]],
        2,
        ("does not fit", "takes inputs features, scale", "the signature sequence"),
        "-",
    ),
    Case(
        "check-other-model-outputs",
        lambda f: ["check", f["artifact"], "--model", f["other_outputs"]],
        2,
        ("does not fit", "returns outputs logits, probs", "the signature score"),
        "-",
    ),
]


def _write_fixtures(root: Path) -> dict:
    model = save_multi_io(root / "model")
    f: dict = {"model": model, "missing": root / "missing"}
    (root / "a_file").write_text("not a model")
    f["a_file"] = root / "a_file"
    (root / "empty_dir").mkdir()
    f["empty_dir"] = root / "empty_dir"
    os.symlink(root / "loop_b", root / "loop")
    os.symlink(root / "loop", root / "loop_b")
    f["loop"] = root / "loop"
    os.symlink(root / "nowhere", root / "dangling")
    f["dangling"] = root / "dangling"
    truncated = root / "truncated_pb"
    shutil.copytree(model, truncated)
    pb = truncated / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 3])
    f["truncated_pb"] = truncated
    corrupt = root / "corrupt_variables"
    shutil.copytree(model, corrupt)
    for shard in (corrupt / "variables").glob("variables.data-*"):
        shard.write_bytes(shard.read_bytes()[:16])
    f["corrupt_variables"] = corrupt
    good = {"features": np.zeros((3, 4), np.float32), "scale": np.ones((3, 1), np.float32)}
    arrays = {
        "nan_npz": {**good, "features": np.full((3, 4), np.nan, np.float32)},
        "colour_npz": {"features": good["features"], "colour": good["scale"]},
        "half_npz": {"features": good["features"]},
        "shape_npz": {**good, "features": np.zeros((3, 5), np.float32)},
        "complex_npz": {**good, "features": np.zeros((3, 4), np.complex64)},
        "counts_npz": {**good, "scale": np.ones((2, 1), np.float32)},
        "empty_npz": {"features": np.zeros((0, 4), np.float32), "scale": np.zeros((0, 1), np.float32)},
    }
    for name, content in arrays.items():
        np.savez(root / f"{name}.npz", **content)
        f[name] = root / f"{name}.npz"
    np.savez(root / "ok.npz", **good)
    (root / "truncated.npz").write_bytes((root / "ok.npz").read_bytes()[:200])
    f["truncated_npz"] = root / "truncated.npz"
    (root / "random.npz").write_bytes(np.random.default_rng(0).bytes(512))
    f["random_npz"] = root / "random.npz"
    np.save(root / "one.npy", good["features"])
    f["npy"] = root / "one.npy"
    (root / "data.csv").write_text("1,2,3\n")
    f["csv"] = root / "data.csv"
    (root / "not.json").write_text("{not json")
    f["not_json"] = root / "not.json"
    (root / "other.json").write_text('{"hello": 1}')
    f["not_report"] = root / "other.json"
    done = run_cli("convert", model, "-t", "tflite", "-o", root / "run", "--no-bench", "--no-history")
    assert done.returncode == 0, done.stderr
    f["report"] = root / "run" / "report.json"
    f["artifact"] = root / "run" / "tflite" / "model.tflite"
    report = json.loads(f["report"].read_text())
    report["targets"][0]["size_bytes"] = "big"
    (root / "wrong_type.json").write_text(json.dumps(report))
    f["wrong_type"] = root / "wrong_type.json"
    f["dyn"] = save_dynamic_sum(root / "dyn")
    f["other_outputs"] = _save_other_outputs(root / "other_outputs")
    np.savez(root / "zero.npz", sequence=np.zeros((3, 0, 3), np.float32))
    f["zero_npz"] = root / "zero.npz"
    f["ok_npz"] = root / "ok.npz"
    np.save(root / "labels_99.npy", np.array([0, 1, 99]))
    f["labels_99"] = root / "labels_99.npy"
    f["long"] = root / LONG
    f["bad_history"] = _damaged_history(root / "history" / "bad.db", report)
    return f


def _save_other_outputs(path: Path) -> Path:
    """The multi-IO model's inputs (features, scale) with another output: its artifacts' inputs fit, not outputs."""
    t = tf()

    class OtherOutputs(t.Module):
        @t.function(
            input_signature=[
                t.TensorSpec([None, 4], t.float32, name="features"),
                t.TensorSpec([None, 1], t.float32, name="scale"),
            ]
        )
        def serve(self, features, scale):
            return {"score": t.reduce_sum(features, axis=1, keepdims=True) * scale}

    module = OtherOutputs()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


def _damaged_history(path: Path, report: dict) -> Path:
    """A real history (a valid SQLite header, the schema on page 1) whose later pages are garbage."""
    import sqlite3

    from edgeport.report.history import append_run

    for _ in range(30):  # enough rows for several pages
        append_run(path, report, output=path.parent)
    connection = sqlite3.connect(path)
    connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    connection.close()
    data = bytearray(path.read_bytes())
    data[4096:] = np.random.default_rng(1).bytes(len(data) - 4096)
    path.write_bytes(bytes(data))
    for sidecar in path.parent.glob(path.name + "-*"):
        sidecar.unlink()
    return path


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory):
    return _write_fixtures(tmp_path_factory.mktemp("bad_input"))


def _state(folder: Path):
    if not folder.exists():
        return None
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_the_table_has_sixty_cases_or_more():
    assert len(CASES) >= 60 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, fixtures, tmp_path):
    f = {**fixtures, "tmp": tmp_path, "out": tmp_path / "out"}
    model_before = _state(fixtures["model"])
    files_before = {key: (f[key].read_bytes(), _state(f[key].parent)) for key in case.untouched}
    result = run_cli(*case.args(f), cwd=tmp_path)  # a history written by mistake would land in tmp_path
    assert result.returncode == case.code, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("edgeport: error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for fragment in case.fragments:
        assert fragment in errors[0], errors[0]
    if case.out == "absent":
        assert _state(f["out"]) is None, _state(f["out"])
    if case.out == "logs":
        kept = [".edgeport-manifest.json", ".edgeport.lock", "logs", "logs/.edgeport-target", "logs/model.log"]
        assert _state(f["out"]) == kept
    assert _state(fixtures["model"]) == model_before  # nothing written into the SavedModel
    for key, before in files_before.items():  # not one byte changed, no file added beside it
        assert (f[key].read_bytes(), _state(f[key].parent)) == before, key
    assert ROOT.exists()
