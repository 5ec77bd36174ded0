"""The output folder tells the truth about one run: after kill -9 at any stage and a rerun, beside another run
holding the lock, on a full disk, after Ctrl-C, and never inside the SavedModel.

Runs go through the CLI in their own process group (killed as a whole, as a CI runner or an OOM killer would).
Stages are held open by the fake plug-in's `hold_*` options (`frozengraph`), or by a long benchmark (`tflite`).
The full disk is a real tmpfs of a few MB mounted as the output folder's file system (needs root; skipped
otherwise).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edgeport.errors import UsageError
from edgeport.report.files import write_files
from edgeport.run.output_folder import MANIFEST, MARKER, OutputFolder
from edgeport_testing import PLUGIN_ENV, assert_one_line_error, quick_bench, run_cli, save_with_op, tf

COMMON = ("--no-baseline", "--no-history", *quick_bench())
REPORTS = {"report.json", "junit.xml", "summary.md", "report.html"}
USER_FILES = {"README.txt", "notes"}  # the user's own things in OUT: never touched


def save_affine(path: Path, inputs: int, seed: int) -> Path:
    t = tf()

    class Affine(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(t.random.stateless_normal([inputs, 3], seed=[seed, 1]))

        @t.function(input_signature=[t.TensorSpec([1, inputs], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.tanh(t.matmul(x, self.w))}

    module = Affine()
    t.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("output-folder-models")
    return {
        "a": save_affine(base / "a", 4, 1),
        "b": save_affine(base / "b", 2, 2),
        "flex": save_with_op(base / "flex", "cumprod"),
    }


@pytest.fixture(scope="module")
def previous(tiny, tmp_path_factory) -> Path:
    """An earlier, finished run of another model (b: tflite and tflite:fp16, exit 0), plus the user's files."""
    out = tmp_path_factory.mktemp("previous") / "out"
    result = run_cli("convert", tiny["b"], "-t", "tflite", "-t", "tflite:fp16", "-o", out, *COMMON)
    assert result.returncode == 0, result.stderr
    (out / "README.txt").write_text("mine\n")
    (out / "notes").mkdir()
    (out / "notes" / "todo.txt").write_text("mine too\n")
    return out


@pytest.fixture
def out(previous, tmp_path) -> Path:
    folder = tmp_path / "out"
    shutil.copytree(previous, folder)
    return folder


def names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def report_of(folder: Path) -> dict:
    return json.loads((folder / "report.json").read_text())


def wait_until(predicate, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _default_sigint() -> None:
    """In the child before exec: SIGINT's default disposition, whatever the test runner's. A shell starts `cmd &`
    with SIGINT ignored, an ignored signal stays ignored across exec, and edgeport leaves an ignored SIGINT
    ignored (README, Signals): without this every Ctrl-C test fails in a background job."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


class Started:
    """`edgeport convert ...` running in its own process group, its stderr collected line by line."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "edgeport", "convert", *map(str, args)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **PLUGIN_ENV},
            start_new_session=True,
            preexec_fn=_default_sigint,  # noqa: PLW1509 - only signal.signal, in the child before exec
        )
        self.pid = self.process.pid
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.lines.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 120) -> None:
        def seen() -> bool:
            assert self.process.poll() is None or any(text in line for line in self.lines), self.stderr
            return any(text in line for line in self.lines)

        wait_until(seen, repr(text), timeout)

    def signal(self, signum: int) -> None:
        os.killpg(self.pid, signum)  # the whole group: the orchestrator and every worker it spawned

    def wait(self, timeout: float = 120) -> subprocess.CompletedProcess:
        code = self.process.wait(timeout)
        self._reader.join(10)
        return subprocess.CompletedProcess(self.process.args, code, "", self.stderr)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.signal(signal.SIGKILL)
        self.process.wait(60)
        wait_until(lambda: not _group_alive(self.pid), "the killed run's workers to go", 30)


def _group_alive(pgid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def assert_only_this_run(out: Path, model: Path, targets: tuple[str, ...] = ("tflite",)) -> None:
    """OUT holds this run's report and artifacts, its logs, the user's files: nothing of an earlier run."""
    report = report_of(out)
    assert report["status"] == "finished" and report["exit_code"] == 0
    assert report["model"]["path"] == str(model)
    assert [t["name"] for t in report["targets"]] == list(targets)
    slugs = {t["folder"] for t in report["targets"]}
    assert names(out) == {".edgeport.lock", MANIFEST, "logs", *REPORTS, *slugs, *USER_FILES}
    assert names(out / "logs") == {MARKER, "model.log", *(f"{slug}.log" for slug in slugs)}
    for target in report["targets"]:
        folder = out / target["folder"]
        assert names(folder) == {*target["files"], MARKER}
        assert target["size_bytes"] == sum((folder / f).stat().st_size for f in target["files"])
    assert f'name="edgeport {model}"' in (out / "junit.xml").read_text()
    assert f"Model `{model}`" in (out / "summary.md").read_text()
    assert (out / "notes" / "todo.txt").read_text() == "mine too\n"


# ---- kill -9 at each stage, then a rerun into the same folder ---------------------------------------------------

STAGES = {  # stage: (extra flags, how to know the run is inside it)
    "load": ((), "model: load"),
    "convert": (("-O", "hold_convert=60"), "frozengraph: convert"),
    "check": (("-O", "hold_check=60"), "frozengraph: check"),
    "bench": (("--min-seconds", "60", "--max-seconds", "60"), "tflite: bench"),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_kill_9_at_each_stage_then_a_rerun_leaves_only_the_rerun(tiny, previous, out, stage):
    flags, inside = STAGES[stage]
    run = Started(tiny["a"], "-t", "tflite", "-t", "frozengraph", "-o", out, *COMMON, *flags)
    try:
        run.wait_for(inside)
        if stage == "convert":  # tflite is in place, frozengraph's converter holds with its files in staging
            wait_until(lambda: list(out.glob(".staging-frozengraph-*/model.pb")), "the staged artifact")
    finally:
        run.kill()

    if stage == "load":  # nothing converted yet: OUT still shows the previous run, untouched
        assert (out / "report.json").read_bytes() == (previous / "report.json").read_bytes()
        for slug in ("tflite", "tflite-fp16"):
            assert (out / slug / "model.tflite").read_bytes() == (previous / slug / "model.tflite").read_bytes()
        assert not (out / "frozengraph").exists()
    else:  # killed mid-run: no finished report of another model beside this run's artifacts
        record = report_of(out)
        assert record["status"] == "running" and record["pid"] == run.pid
        assert record["model"]["path"] == str(tiny["a"]) and record["targets"] == []
        assert not (REPORTS - {"report.json"}) & names(out)
        assert (out / "tflite" / MARKER).read_text().startswith("edgeport target tflite\ntoken ")
        if stage == "convert":
            assert list(out.glob(".staging-frozengraph-*"))  # what kill -9 leaves, for the rerun to clear
        refused = run_cli("compare", out / "report.json", out / "report.json")
        assert_one_line_error(refused, 2, "a run that did not finish (running)")

    rerun = run_cli("convert", tiny["a"], "-t", "tflite", "-o", out, *COMMON, env=PLUGIN_ENV)
    assert rerun.returncode == 0, rerun.stderr
    assert_only_this_run(out, tiny["a"])  # no .staging-*, no frozengraph, no tflite-fp16 of the earlier run


def marker(token: str, target: str) -> str:
    return f"edgeport target {target}\ntoken {token}\n"


def test_a_run_killed_between_the_two_renames_gets_its_old_artifact_back(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    OutputFolder.take(out).close()  # an edgeport folder: its manifest holds the token its markers carry
    token = json.loads((out / MANIFEST).read_text())["token"]
    aside = out / ".old-tflite-int8-4242"  # old renamed aside, the new one never arrived
    aside.mkdir()
    (aside / "model.tflite").write_text("old")
    (aside / MARKER).write_text(marker(token, "tflite:int8"))
    (out / ".staging-tflite-int8-x1y2").mkdir()
    (out / ".staging-tflite-int8-x1y2" / "model.tflite").write_text("new, never moved")
    (out / ".old-onnx-4242").mkdir()  # the new one arrived, the old was not deleted yet
    (out / ".old-onnx-4242" / MARKER).write_text(marker(token, "onnx"))
    (out / "onnx").mkdir()
    (out / "onnx" / "model.onnx").write_text("new")
    (out / "onnx" / MARKER).write_text(marker(token, "onnx"))
    (out / f".trash-{token[:12]}-tfjs-4242").mkdir()  # a deletion cut short
    (out / ".report.json.a1b2c3d4").write_text('{"half": ')  # a report write cut short
    folder = OutputFolder.take(out)
    try:
        assert names(out) == {".edgeport.lock", MANIFEST, "logs", "tflite-int8", "onnx"}
        assert (out / "tflite-int8" / "model.tflite").read_text() == "old"
        assert (out / "onnx" / "model.onnx").read_text() == "new"
        with pytest.raises(UsageError, match=rf"is in use by another edgeport run \(pid {os.getpid()}\)"):
            OutputFolder.take(out)
    finally:
        folder.close()
    OutputFolder.take(out).close()  # released with the run


def test_artifacts_are_replaced_by_rename_and_only_edgeports_folders_are_removed(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    earlier = OutputFolder.take(out)  # an earlier run: tflite installed, a summary and layer data written
    try:
        earlier.begin(tmp_path / "model", ["tflite"])
        (out / ".staging-tflite-0").mkdir()
        (out / ".staging-tflite-0" / "model.tflite").write_text("old")
        earlier.install(out / ".staging-tflite-0", "tflite", "tflite")
        earlier.write_reports({"report.json": '{"schema_version": 1, "targets": []}', "summary.md": "# earlier"})
        earlier.write_reports({"tflite.model-explorer.json": "{}"})
    finally:
        earlier.close()
    (out / "mine").mkdir()  # the user's: no marker
    folder = OutputFolder.take(out, slugs=["tflite", "onnx", "stale"])
    try:
        folder.begin(tmp_path / "model", ["tflite", "onnx"])
        assert report_of(out)["status"] == "running"
        assert names(out) == {".edgeport.lock", MANIFEST, "logs", "tflite", "mine", "report.json"}
        for slug, text in (("tflite", "new"), ("onnx", "new"), ("stale", "old")):
            staging = out / f".staging-{slug}-1"
            staging.mkdir()
            (staging / "model").write_text(text)
            folder.install(staging, slug, slug)
        assert (out / "tflite" / "model").read_text() == "new" and not list(out.glob(".old-*"))
        assert not (out / "tflite" / "model.tflite").exists()
        folder.discard("onnx")  # its conversion failed this time
        folder.write_reports({"report.json": "{}", "summary.md": "# this run"})
        folder.finish(["tflite"])
        assert names(out) == {".edgeport.lock", MANIFEST, "logs", "tflite", "mine", "report.json", "summary.md"}
    finally:
        folder.close()


def test_a_failed_conversion_removes_the_previous_artifact(tiny, out):
    # Cumprod is a Flex op: without --allow-tf-ops both conversions fail, where the earlier run's artifacts sit.
    failed = run_cli("convert", tiny["flex"], "-t", "tflite", "-t", "tflite:fp16", "-o", out, "--no-bench", *COMMON)
    assert failed.returncode == 3, failed.stderr
    for target in report_of(out)["targets"]:
        assert target["stages"][0]["status"] == "error" and "Cumprod" in target["stages"][0]["reason"]
    assert names(out) == {".edgeport.lock", MANIFEST, "logs", *REPORTS, *USER_FILES}  # not the earlier model.tflite


# ---- two runs into one folder -----------------------------------------------------------------------------------


def test_a_second_run_into_a_folder_in_use_is_refused_naming_the_holder(tiny, out):
    first = Started(tiny["a"], "-t", "frozengraph", "-O", "hold_convert=60", "-o", out, *COMMON)
    try:
        first.wait_for("frozengraph: convert")
        wait_until(lambda: list(out.glob(".staging-frozengraph-*/model.pb")), "the staged artifact")
        before = sorted(str(p.relative_to(out)) for p in out.rglob("*") if "logs" not in p.parts)
        second = run_cli("convert", tiny["b"], "-t", "tflite", "-o", out, *COMMON, env=PLUGIN_ENV)
        assert_one_line_error(
            second, 2, f"{out} is in use by another edgeport run (pid {first.pid}); wait for it or pick another -o"
        )
        assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if "logs" not in p.parts) == before
        record = report_of(out)
        assert record["status"] == "running" and record["pid"] == first.pid
    finally:
        first.kill()


# ---- Ctrl-C -----------------------------------------------------------------------------------------------------


def test_ctrl_c_exits_130_and_leaves_no_unreported_artifact(tiny, out):
    run = Started(tiny["a"], "-t", "tflite", "-t", "frozengraph", "-O", "hold_check=60", "-o", out, *COMMON)
    try:
        log = out / "logs" / "frozengraph.log"
        wait_until(lambda: log.is_file() and "holding check" in log.read_text(), "the check to hold")
        assert (out / "tflite" / "model.tflite").is_file()  # converted, checked, benchmarked: not yet reported
        run.signal(signal.SIGINT)  # what a terminal sends on Ctrl-C: the foreground process group
        result = run.wait(90)
    finally:
        run.kill()
    assert_one_line_error(result, 130, "interrupted")
    assert names(out) == {".edgeport.lock", MANIFEST, "logs", "report.json", *USER_FILES}
    record = report_of(out)
    assert record["status"] == "interrupted" and record["model"]["path"] == str(tiny["a"])
    assert "artifacts were removed" in record["message"]


def test_ctrl_c_while_the_model_loader_starts_prints_one_line_and_no_worker_traceback(tiny, previous, out):
    """Workers start with SIGINT blocked and then ignore it: Ctrl-C reaches the orchestrator only, which stops
    every worker before it prints its line (a worker that went on loading printed TensorFlow's start-up lines
    below it: issue 28, 1 run in 8)."""
    run = Started(tiny["a"], "-t", "tflite", "-o", out, *COMMON)
    try:
        run.wait_for("model: load")  # printed just before the model loader's process starts
        run.signal(signal.SIGINT)
        result = run.wait(90)
    finally:
        run.kill()
    assert_one_line_error(result, 130, "interrupted")  # one line, and no traceback from any process
    assert report_of(out) == report_of(previous)  # stopped before any work: OUT still shows the previous run


# ---- a full disk --------------------------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A real 8 MB tmpfs: ENOSPC from the kernel, not a mock."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)]
    mounted = subprocess.run(mount, capture_output=True, text=True, check=False)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield disk
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True, check=False).returncode:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True, check=False)


def fill(disk: Path, leave: int) -> None:
    """Fill the file system, then give back `leave` bytes (logs still fit, a report does not)."""
    with open(disk / "filler", "wb", buffering=0) as handle:
        for chunk in (1 << 20, 1 << 16, 1 << 12):
            try:
                while True:
                    handle.write(b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
        handle.truncate(max(0, handle.tell() - leave))


def test_a_report_batch_that_does_not_fit_leaves_no_file_of_it(small_disk):
    (small_disk / "report.json").write_text("an earlier report\n")
    fill(small_disk, leave=16 * 1024)
    with pytest.raises(OSError) as raised:
        write_files(small_disk, {"junit.xml": "<testsuites/>\n", "report.json": "x" * 200_000})
    assert raised.value.errno == errno.ENOSPC
    assert names(small_disk) == {"filler", "report.json"}  # no temp file, no junit.xml
    assert (small_disk / "report.json").read_text() == "an earlier report\n"


def test_a_full_disk_while_writing_the_report_exits_3_with_one_line_and_no_partial_report(tiny, small_disk):
    out = small_disk / "out"
    run = Started(tiny["a"], "-t", "tflite", "-o", out, *COMMON, "--min-seconds", "3", "--max-seconds", "6")
    try:
        run.wait_for("tflite: bench")
        assert (out / "tflite" / "model.tflite").is_file()  # the artifact fit
        fill(small_disk, leave=16 * 1024)  # the report (tens of KB) will not
        result = run.wait(120)
    finally:
        run.kill()
    assert_one_line_error(result, 3, f"cannot write the report in {out}: No space left on device; free space and rerun")
    assert names(out) == {".edgeport.lock", MANIFEST, "logs"}  # no report file, no temp file, no unreported artifact


# ---- -o inside the SavedModel -------------------------------------------------------------------------------------


@pytest.mark.parametrize("where", ["the model", "inside", "through a symlink", "model in a target folder", "above"])
def test_an_output_folder_in_the_savedmodel_or_holding_it_is_refused_before_any_work(tiny, tmp_path, where):
    model = tmp_path / "sm"
    shutil.copytree(tiny["a"], model)
    if where == "model in a target folder":  # OUT/tflite would be replaced by the artifact
        model = tmp_path / "out" / "tflite"
        shutil.copytree(tiny["a"], model)
    before = sorted(p.relative_to(model) for p in model.rglob("*"))
    if where == "through a symlink":
        (tmp_path / "link").symlink_to(model)
    out = {
        "the model": model,
        "inside": model / "out",
        "through a symlink": tmp_path / "link" / "out",
        "model in a target folder": tmp_path / "out",
        "above": tmp_path,  # -o a parent of the model folder: edgeport would write beside the model
    }[where]
    result = run_cli("convert", model, "-t", "tflite", "-o", out, *COMMON)
    expected = "holds the SavedModel folder" if where in ("model in a target folder", "above") else "SavedModel folder"
    assert_one_line_error(result, 2, expected, "pass -o with a folder outside it")
    assert sorted(p.relative_to(model) for p in model.rglob("*")) == before
    assert not list(tmp_path.rglob(".edgeport*"))  # nothing written anywhere
