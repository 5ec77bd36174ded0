"""edgeport deletes or replaces in OUT only what it can prove it made (issue 21, class 1), and a model whose op
fails at run time keeps its message and its logs (class 4).

The user's files are real files next to OUT and behind symlinks; after every refusal or run each of them is
compared byte for byte (`snapshot`). Most tests drive `OutputFolder` directly (fast); a few run the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from edgeport.errors import ConversionError, UsageError, first_line
from edgeport.run.output_folder import (
    LOCK_NAME,
    MANIFEST,
    MARKER,
    OutputFolder,
    claim_folder,
    edgeport_names,
    open_lock,
)
from edgeport_testing import assert_one_line_error, quick_bench, run_cli, tf

COMMON = ("--no-baseline", "--no-history", *quick_bench())


# ---- helpers ------------------------------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple[str, bytes | str]]:
    """Every entry under `root` (symlinks not followed): its kind and its bytes (a file) or target (a link)."""
    state: dict[str, tuple[str, bytes | str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath) / name
            key = str(path.relative_to(root))
            if path.is_symlink():
                state[key] = ("link", os.readlink(path))
            elif path.is_dir():
                state[key] = ("dir", b"")
            else:
                state[key] = ("file", path.read_bytes())
    return state


def user_files(folder: Path) -> Path:
    """A folder of the user's: files, a sub-folder, names that look like edgeport's leftovers."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "README.txt").write_text("mine\n")
    (folder / "notes").mkdir()
    (folder / "notes" / "todo.txt").write_text("mine too\n")
    (folder / ".staging-thesis").mkdir()  # edgeport's prefixes, but the user's folders
    (folder / ".staging-thesis" / "draft.tex").write_text("chapter 1\n")
    (folder / ".report.json.a1b2c3d4").write_text("a temp file name, but mine\n")
    return folder


def token_of(out: Path) -> str:
    return json.loads((out / MANIFEST).read_text())["token"]


def edgeport_folder(out: Path, slugs: tuple[str, ...] = ("tflite",)) -> Path:
    """OUT after a finished run of edgeport's: manifest, lock, logs, a report, one installed target per slug."""
    out.mkdir(parents=True, exist_ok=True)
    folder = OutputFolder.take(out, slugs=slugs)
    try:
        folder.begin(out / "model", list(slugs))
        for slug in slugs:
            staging = out / f".staging-{slug}-x"
            staging.mkdir()
            (staging / "model.bin").write_bytes(b"artifact")
            folder.install(staging, slug, slug)
        (out / "logs" / "model.log").write_text("edgeport's log\n")
        targets = [{"name": s, "folder": s} for s in slugs]
        folder.write_reports({"report.json": json.dumps({"schema_version": 1, "targets": targets}) + "\n"})
        folder.finish(slugs)
    finally:
        folder.close()
    return out


def run_into(out: Path, slugs: tuple[str, ...] = ("tflite",), **take) -> None:
    """One run's whole life in OUT: begin, install every slug, report, finish."""
    folder = OutputFolder.take(out, slugs=slugs, **take)
    try:
        folder.begin(out / "model", list(slugs))
        for slug in slugs:
            staging = out / f".staging-{slug}-y"
            staging.mkdir()
            (staging / "model.bin").write_bytes(b"new artifact")
            folder.install(staging, slug, slug)
        folder.write_reports({"report.json": "{}\n", "summary.md": "# run\n"})
        folder.finish(slugs)
    finally:
        folder.close()


# ---- a folder of the user's ---------------------------------------------------------------------------------------


def test_a_folder_of_the_users_that_is_not_empty_is_refused_naming_what_is_in_it(tmp_path):
    out = user_files(tmp_path / "out")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as refused:
        OutputFolder.take(out)
    assert str(refused.value) == (
        f"output folder {out} is not empty and edgeport did not make it (it holds .report.json.a1b2c3d4, "
        ".staging-thesis, README.txt and 1 more); pass -o with a new or empty folder, or --force to add "
        "edgeport's files beside these"
    )
    assert snapshot(tmp_path) == before  # no lock, no manifest, nothing


def test_an_empty_folder_is_fine_and_becomes_edgeports(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    run_into(out)
    assert {p.name for p in out.iterdir()} == {LOCK_NAME, MANIFEST, "logs", "tflite", "report.json", "summary.md"}
    run_into(out)  # its manifest says so: the next run reuses it


def test_force_adds_edgeports_files_beside_the_users_and_touches_none_of_theirs(tmp_path):
    out = user_files(tmp_path / "out")
    before = snapshot(out)
    run_into(out, force=True)
    run_into(out, slugs=("onnx",))  # a later run needs no --force (the manifest) and removes its own tflite only
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before  # every user file, byte for byte
    assert {"onnx", "report.json", "summary.md"} <= set(after) and "tflite" not in after
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["foreign"] == [".report.json.a1b2c3d4", ".staging-thesis", "README.txt", "notes"]


def test_force_still_refuses_a_name_edgeport_would_write_over(tmp_path):
    out = user_files(tmp_path / "out")
    (out / "summary.md").write_text("my summary\n")
    (out / "junit.xml").write_text("<my-tests/>\n")
    (out / "logs").mkdir()
    (out / "logs" / "build.log").write_text("my log\n")
    (out / "tflite").mkdir()  # where the tflite artifact would go
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as refused:
        OutputFolder.take(out, slugs=["tflite"], force=True)
    assert str(refused.value) == (
        f"output folder {out} holds junit.xml, logs, summary.md and 1 more, which edgeport did not make and would "
        "write over; move them or pass another -o"
    )
    assert snapshot(tmp_path) == before


def test_a_report_json_edgeport_did_not_write_gets_no_folder_deleted(tmp_path):
    out = edgeport_folder(tmp_path / "out")
    (out / "datasets").mkdir()  # the user's folder
    (out / "datasets" / "train.npz").write_bytes(b"\x00data")
    copied = tmp_path / "other" / "tflite-fp16"  # a target folder of another OUT: another token in its marker
    copied.mkdir(parents=True)
    (copied / "model.tflite").write_bytes(b"theirs")
    (copied / MARKER).write_text("edgeport target tflite:fp16\ntoken " + "0" * 32 + "\n")
    shutil.copytree(copied, out / "tflite-fp16")
    (out / "forged").mkdir()  # a marker without the token, as another tool might write one
    (out / "forged" / MARKER).write_text("edgeport target tflite\n")
    targets = [{"name": n, "folder": n} for n in ("datasets", "tflite-fp16", "forged")]
    (out / "report.json").write_text(json.dumps({"schema_version": 1, "targets": targets}))  # another tool's
    user = {n: snapshot(out / n) for n in ("datasets", "tflite-fp16", "forged")}
    run_into(out, slugs=("onnx",))
    assert {n: snapshot(out / n) for n in user} == user
    assert not (out / "tflite").exists()  # edgeport's own earlier target went, as it should


# ---- symlinks inside OUT --------------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path) -> Path:
    """The user's files outside OUT, where symlinks in OUT point."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "precious.txt").write_text("never overwritten\n")
    (folder / "build.log").write_text("never deleted\n")
    (folder / "tflite").mkdir()
    (folder / "tflite" / "weights.bin").write_bytes(b"\x01\x02")
    return folder


@pytest.mark.parametrize("name", [LOCK_NAME, "logs", "summary.md", "tflite"])
def test_a_symlink_where_edgeport_writes_is_refused_and_what_is_behind_it_stays(tmp_path, elsewhere, name):
    out = edgeport_folder(tmp_path / "out")
    behind = {LOCK_NAME: "precious.txt", "logs": ".", "summary.md": "precious.txt", "tflite": "tflite"}[name]
    target = (elsewhere / behind).resolve()
    if name == "tflite":  # with edgeport's marker and token inside: still not followed
        shutil.copy(out / "tflite" / MARKER, elsewhere / "tflite" / MARKER)
    _remove_entry(out / name)
    (out / name).symlink_to(target)
    before = snapshot(tmp_path)
    with pytest.raises(UsageError) as refused:
        OutputFolder.take(out, slugs=["tflite"])
    assert f"holds {name}{'/' if name == 'tflite' else ''} (a symlink)" in str(refused.value)
    assert snapshot(tmp_path) == before


def test_a_new_folder_holding_only_a_symlinked_lock_is_refused_even_with_force(tmp_path, elsewhere):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(elsewhere / "precious.txt")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"holds \.edgeport\.lock \(a symlink\), which edgeport did not make"):
        OutputFolder.take(out, force=True)
    assert snapshot(tmp_path) == before


def test_a_hard_linked_lock_is_refused_and_its_file_stays(tmp_path, elsewhere):
    out = edgeport_folder(tmp_path / "out")
    (out / LOCK_NAME).unlink()
    os.link(elsewhere / "precious.txt", out / LOCK_NAME)
    with pytest.raises(UsageError, match=r"holds \.edgeport\.lock \(a hard link\)"):
        OutputFolder.take(out)
    assert (elsewhere / "precious.txt").read_text() == "never overwritten\n"


def test_the_lock_is_opened_without_following_a_symlink_or_writing_a_hard_link(tmp_path, elsewhere):
    """What a symlink or hard link swapped in after the checks meets: `open_lock` itself refuses both."""
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(elsewhere / "precious.txt")
    with pytest.raises(UsageError, match=r"\.edgeport\.lock is a symlink; edgeport follows no symlink in OUT"):
        open_lock(out)
    (out / LOCK_NAME).unlink()
    os.link(elsewhere / "precious.txt", out / LOCK_NAME)
    with pytest.raises(UsageError, match=r"is not edgeport's lock file \(a hard link or not a file\)"):
        open_lock(out)
    assert (elsewhere / "precious.txt").read_text() == "never overwritten\n"


def test_a_symlink_among_the_logs_goes_as_a_link_and_its_target_stays(tmp_path, elsewhere):
    out = edgeport_folder(tmp_path / "out")
    (out / "logs" / "tflite.log").symlink_to(elsewhere / "build.log")
    before = snapshot(elsewhere)
    run_into(out)
    assert snapshot(elsewhere) == before
    assert {p.name for p in (out / "logs").iterdir()} == {MARKER}  # the earlier run's logs went, links as links


def test_a_target_folder_symlinked_in_is_never_deleted_through(tmp_path, elsewhere):
    out = edgeport_folder(tmp_path / "out")
    shutil.copy(out / "tflite" / MARKER, elsewhere / "tflite" / MARKER)  # edgeport's marker, even its token
    (out / "old-artifact").symlink_to(elsewhere / "tflite")
    before = snapshot(elsewhere)
    run_into(out)
    assert snapshot(elsewhere) == before and (out / "old-artifact").is_symlink()


def _remove_entry(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# ---- what the run itself may not do -----------------------------------------------------------------------------


def test_install_never_replaces_a_folder_edgeport_did_not_make(tmp_path):
    out = edgeport_folder(tmp_path / "out", slugs=())
    folder = OutputFolder.take(out)  # no slugs named up front: install itself must check
    try:
        (out / "onnx").mkdir()
        (out / "onnx" / "mine.onnx").write_bytes(b"mine")
        staging = out / ".staging-onnx-1"
        staging.mkdir()
        with pytest.raises(ConversionError, match=r"onnx: .*/onnx is not a folder edgeport made, so the artifact"):
            folder.install(staging, "onnx", "onnx")
        folder.discard("onnx")  # a failed conversion's cleanup: not edgeport's, so it stays
    finally:
        folder.close()
    assert (out / "onnx" / "mine.onnx").read_bytes() == b"mine"


def test_a_report_name_edgeport_did_not_claim_is_not_written_over(tmp_path):
    out = user_files(tmp_path / "out")
    folder = OutputFolder.take(out, force=True)
    try:
        with pytest.raises(UsageError, match=r"holds README\.txt, which edgeport did not make and would write over"):
            folder.write_reports({"README.txt": "edgeport's\n"})
    finally:
        folder.close()
    assert (out / "README.txt").read_text() == "mine\n"


def test_a_folder_this_run_made_goes_after_a_refusal_only_while_it_holds_nothing_but_edgeports(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    folder = OutputFolder.take(out)
    (out / "logs" / "model.log").write_text("edgeport's\n")
    assert folder.remove_if_untouched() and not out.exists()
    folder.close()

    out.mkdir()
    folder = OutputFolder.take(out)
    (out / "mine.txt").write_text("written by the user meanwhile\n")
    try:
        assert not folder.remove_if_untouched()
    finally:
        folder.close()
    assert (out / "mine.txt").read_text() == "written by the user meanwhile\n" and (out / "logs").is_dir()


def test_an_output_path_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "out"
    path.write_text("a file\n")
    with pytest.raises(UsageError, match=r"cannot use output folder .*/out \(File exists\); pass -o with a folder"):
        claim_folder(path, edgeport_names())
    assert path.read_text() == "a file\n"


# ---- the fleet claims OUT and every OUT/<model> the same way ----------------------------------------------------


def test_a_fleet_claims_its_folders_and_refuses_the_users(tmp_path):
    out = tmp_path / "fleet-out"
    claim_folder(out, ("fleet.json", "summary.md"), folders=["a", "b"])
    claim_folder(out / "a", edgeport_names(["tflite"]), slugs=["tflite"])
    assert token_of(out) != token_of(out / "a")
    claim_folder(out, ("fleet.json", "summary.md"), folders=["a", "b"])  # a rerun: its own folders
    user_files(out / "b")
    before = snapshot(tmp_path)
    with pytest.raises(UsageError, match=r"holds b/, which edgeport did not make and would write over"):
        claim_folder(out, ("fleet.json", "summary.md"), folders=["a", "b"])
    with pytest.raises(UsageError, match=r"holds summary\.md/ \(also a file edgeport writes\)"):
        claim_folder(out, ("fleet.json", "summary.md"), folders=["summary.md"])
    (out / "a" / "fleet-attempts.txt").symlink_to(out / "b" / "README.txt")
    with pytest.raises(UsageError, match=r"holds fleet-attempts\.txt \(a symlink\)"):
        claim_folder(out / "a", {*edgeport_names(["tflite"]), "fleet-attempts.txt"}, slugs=["tflite"])
    assert {k: v for k, v in snapshot(tmp_path).items() if "fleet-attempts" not in k} == before


# ---- the CLI, end to end ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_models(tmp_path_factory) -> dict[str, Path]:
    t = tf()
    base = tmp_path_factory.mktemp("trust-models")

    class Affine(t.Module):
        def __init__(self):
            super().__init__()
            self.w = t.Variable(t.random.stateless_normal([4, 3], seed=[1, 1]))

        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            return {"y": t.tanh(t.matmul(x, self.w))}

    class ReadsAFile(t.Module):  # flagged by the scan (ReadFile); trusted, its op fails at run time
        @t.function(input_signature=[t.TensorSpec([1, 4], t.float32, name="x")])
        def serve(self, x):
            data = t.io.read_file(str(base / "no-such-vocabulary.txt"))
            return {"y": x + t.cast(t.strings.length(data), t.float32)}

    for name, module in (("affine", Affine()), ("reads", ReadsAFile())):
        t.saved_model.save(module, str(base / name), signatures={"serving_default": module.serve})
    return {"affine": base / "affine", "reads": base / "reads", "base": base}


def test_cli_refuses_a_users_folder_then_force_leaves_every_user_file_as_it_was(small_models, tmp_path):
    out = user_files(tmp_path / "out")
    (out / "logs").mkdir()  # the reported fault: edgeport emptied these
    (out / "logs" / "train.log").write_text("epoch 1\n")
    before = snapshot(tmp_path)
    refused = run_cli("convert", small_models["affine"], "-t", "tflite", "-o", out, *COMMON)
    assert_one_line_error(refused, 2, f"output folder {out} is not empty and edgeport did not make it", "--force")
    assert snapshot(tmp_path) == before

    clash = run_cli("convert", small_models["affine"], "-t", "tflite", "-o", out, "--force", *COMMON)
    assert_one_line_error(clash, 2, "holds logs, which edgeport did not make and would write over")
    assert snapshot(tmp_path) == before

    shutil.move(out / "logs", tmp_path / "my-logs")
    before = snapshot(out)
    done = run_cli("convert", small_models["affine"], "-t", "tflite", "-o", out, "--force", *COMMON)
    assert done.returncode == 0, done.stderr
    after = snapshot(out)
    assert {k: v for k, v in after.items() if k in before} == before
    assert {"report.json", "summary.md", "junit.xml", "tflite/model.tflite", "logs/model.log"} <= set(after)


@pytest.mark.parametrize("where", ["home", "~", "root"])
def test_cli_refuses_the_home_folder_and_the_file_system_root(small_models, tmp_path, where):
    home = user_files(tmp_path / "home")
    (home / "logs").mkdir()
    (home / "logs" / "x.log").write_text("mine\n")  # the reported fault: a home folder's logs/ was emptied
    before = snapshot(tmp_path)
    out = {"home": str(home), "~": "~", "root": "/"}[where]  # the shell expands ~; a quoted "~" is refused too
    result = run_cli(
        "convert", small_models["affine"], "-t", "tflite", "-o", out, *COMMON, env={"HOME": str(home)}, cwd=tmp_path
    )
    what = "is the file system root" if where == "root" else "is your home folder"
    assert_one_line_error(result, 2, what, "pass -o with a folder of its own")
    assert snapshot(tmp_path) == before
    assert not Path("/.edgeport.lock").exists() and not Path("/.edgeport-manifest.json").exists()


def test_an_op_failing_at_run_time_keeps_its_message_and_the_logs(small_models, tmp_path):
    out = tmp_path / "out"
    result = run_cli("convert", small_models["reads"], "-t", "tflite", "-o", out, "--trust-model", *COMMON)
    assert_one_line_error(
        result,
        3,
        "Graph execution error at node ReadFile: ",
        f"{small_models['base'] / 'no-such-vocabulary.txt'}; No such file or directory",
    )
    assert (out / "logs" / "model.log").is_file()  # the model loaded and ran: its logs stay
    assert {p.name for p in out.iterdir()} == {LOCK_NAME, MANIFEST, "logs"}


def test_first_line_keeps_the_ops_message_of_a_graph_execution_error(small_models):
    t = tf()
    model = t.saved_model.load(str(small_models["reads"]))
    with pytest.raises(t.errors.NotFoundError) as raised:
        model.signatures["serving_default"](x=t.zeros([1, 4]))
    assert str(raised.value).startswith("Graph execution error:\n")
    missing = small_models["base"] / "no-such-vocabulary.txt"
    assert first_line(raised.value) == f"Graph execution error at node ReadFile: {missing}; No such file or directory"


@pytest.mark.parametrize(
    ("message", "line"),
    [
        (
            'in user code:\n\n    File "m.py", line 3, in f  *\n        y = g(x)\n\n    ValueError: bad shape\n',
            "in user code: ValueError: bad shape",
        ),
        (
            "Graph execution error:\n\n2 root error(s) found.\n  (0) INVALID_ARGUMENT: no\n\t [[{{node x}}]]\n",
            "Graph execution error: (0) INVALID_ARGUMENT: no",
        ),
        ("Graph execution error:", "Graph execution error:"),
        ("plain message\nsecond line", "plain message"),
        ("", "ValueError"),
    ],
)
def test_first_line_of_other_tensorflow_shapes(message, line):
    assert first_line(ValueError(message)) == line
