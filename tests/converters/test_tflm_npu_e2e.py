"""tflm:ethos-u* end to end: a real Keras CNN through the real CLI (`edgeport convert`), real Vela (the [npu]
extra), real arm-none-eabi-gcc; and `edgeport doctor` / `edgeport setup --check` saying whether the NPU variants'
Vela and Arm compiler are there and how to install them. Never skipped: `make test` installs both.

One conversion (`-t tflm -t tflm:ethos-u55-128 -t tflm:ethos-u65-256 --no-bench`, about 15 s on 2 cores) feeds
every assertion on report.json. The board is an option of every `tflm` target of a run (README), so each NPU
target takes its own board from edgeport.toml's per-target tables: Corstone-300 (Ethos-U55) for the U55-128,
NXP i.MX 93 (Ethos-U65) for the U65-256; plain `tflm` a board without an NPU.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from edgeport.converters.tflm import firmware, vela
from edgeport_testing import run_cli, save_small_cnn

U55, U65 = "tflm:ethos-u55-128", "tflm:ethos-u65-256"
C_FILES = ("model_data.cc", "model_data.h", "op_resolver.h")
CONFIG = """
[target.tflm]
board = "stm32f746-discovery"

[target."tflm:ethos-u55-128"]
board = "corstone-300"

[target."tflm:ethos-u65-256"]
board = "nxp-imx93"
"""
# Vela's own default system configurations for these generations (vela.FAMILY_DEFAULTS, boards.json).
U55_CONFIG = ("Ethos_U55_High_End_Embedded", "Shared_Sram")
U65_CONFIG = ("Ethos_U65_Client_Server", "Dedicated_Sram_384KB")
ESTIMATES = (
    "npu_cycles_estimated",
    "total_cycles_estimated",
    "inference_ms_estimated",
    "sram_bytes_estimated",
    "clock_hz",
)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """(report.json, output folder, CLI result) of one real `edgeport convert` of the three tflm targets."""
    work = tmp_path_factory.mktemp("npu-e2e")
    model = save_small_cnn(work / "cnn")  # Conv2D, DepthwiseConv2D, GlobalAveragePooling2D, Dense + softmax
    (work / "edgeport.toml").write_text(CONFIG)
    result = run_cli(
        "convert",
        model,
        "--config",
        work / "edgeport.toml",
        "-t",
        "tflm",
        "-t",
        U55,
        "-t",
        U65,
        "--no-bench",
        "-o",
        work / "out",
        cwd=work,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = json.loads((work / "out" / "report.json").read_text())
    return report, work / "out", result


def target(report: dict, name: str) -> dict:
    return next(t for t in report["targets"] if t["name"] == name)


def test_the_int8_model_is_checked_for_every_target_and_every_gate_passed(run):
    report, out, _ = run
    assert report["exit_code"] == 0
    assert report["verdicts"] == {"tflm": "passed", U55: "passed", U65: "passed"}
    for name in ("tflm", U55, U65):
        row = target(report, name)
        stages = {s["stage"]: s["status"] for s in row["stages"]}
        assert stages == {"convert": "passed", "check": "passed", "bench": "skipped"}, name
        assert row["precision"] == "int8" and row["artifact"].endswith("/model.tflite"), name
        assert (out / row["artifact"]).read_bytes()[4:8] == b"TFL3"  # the int8 model, not Vela's, is what ran
        accuracy = row["accuracy"]
        assert accuracy["passed"] and accuracy["samples"] == 32 and not accuracy["failures"], name
        (output,) = accuracy["outputs"]
        assert output["cosine"] >= accuracy["tolerance"]["min_cosine"], name
        assert output["top1_agreement"] >= accuracy["tolerance"]["min_top1_agreement"], name
        assert 0 < output["max_abs_error"] < 0.05, name  # int8 against the float SavedModel: close, not equal
    # One int8 model for all three: the NPU's numerics are not run, the same int8 model is checked.
    checked = {target(report, name)["accuracy"]["outputs"][0]["cosine"] for name in ("tflm", U55, U65)}
    assert len(checked) == 1


def test_each_npu_target_carries_vela_estimate_marked_estimated(run):
    report, _, _ = run
    for name, accelerator, config in ((U55, "ethos-u55-128", U55_CONFIG), (U65, "ethos-u65-256", U65_CONFIG)):
        row = target(report, name)
        estimate = row["details"]["ethos_u"]
        assert estimate["basis"] == "estimated by Vela's performance model, not measured", name
        assert estimate["accelerator"] == accelerator and estimate["vela"] == vela.vela_version()
        assert (estimate["system_config"], estimate["memory_mode"]) == config
        for key in ESTIMATES:
            assert estimate[key] > 0, (name, key)
        assert estimate["npu_operators"] > 0 and estimate["cpu_fallbacks"] == []
        # the time is the cycles at the named clock (no board here gives an NPU clock: Vela's config's)
        seconds = estimate["total_cycles_estimated"] / estimate["clock_hz"]
        assert estimate["inference_ms_estimated"] == pytest.approx(seconds * 1000)
        assert estimate["clock_source"] == f"Vela's {config[0]} clock"
        notes = " ".join(row["notes"])
        assert "estimated, not measured" in notes and "NPU's numerics were not run" in notes
        assert "every operator mapped to the NPU" in notes
    assert "ethos_u" not in target(report, "tflm")["details"]


def test_the_two_npu_configurations_differ_as_their_systems_do(run):
    """U55-128 on Vela's high-end embedded system (500 MHz, weights read from off-chip flash, SRAM shared)
    against U65-256 on its client/server system (1 GHz, weights in DRAM behind a dedicated SRAM)."""
    report, _, _ = run
    u55, u65 = (target(report, name)["details"]["ethos_u"] for name in (U55, U65))
    assert u65["clock_hz"] == 2 * u55["clock_hz"] == vela.config_clock_hz(U65_CONFIG[0])
    assert u65["inference_ms_estimated"] < u55["inference_ms_estimated"]
    assert u55["off_chip_flash_bytes_estimated"] > 0 and u55["dram_bytes_estimated"] == 0
    assert u65["dram_bytes_estimated"] > 0 and u65["off_chip_flash_bytes_estimated"] == 0
    assert u65["off_chip_bytes_per_inference_estimated"] != u55["off_chip_bytes_per_inference_estimated"]
    # the same graph on both: Vela's command streams differ, so do the optimized models
    assert u55["npu_operators"] == u65["npu_operators"]


def test_the_npu_artifact_holds_vela_model_and_c_sources_with_the_ethos_u_op(run):
    report, out, _ = run
    for name in (U55, U65):
        row = target(report, name)
        folder = out / row["folder"]
        assert set(row["files"]) == {"model.tflite", "model_vela.tflite", *C_FILES}
        assert {p.name for p in folder.iterdir() if not p.name.startswith(".")} == set(row["files"])  # + a marker
        optimized = (folder / "model_vela.tflite").read_bytes()
        assert optimized[4:8] == b"TFL3" and vela.CUSTOM_OP.encode() in optimized
        assert vela.CUSTOM_OP.encode() not in (folder / "model.tflite").read_bytes()
        resolver = (folder / "op_resolver.h").read_text()
        assert "AddEthosU()" in resolver and "g_model_op_count = 1;" in resolver  # every op on the NPU
        header = (folder / "model_data.h").read_text()
        assert f"({len(optimized)} bytes)" in header and "from model_vela.tflite" in header  # the array is Vela's
        assert _array_bytes(folder / "model_data.cc") == optimized
        # its arena was not measured: Vela's SRAM estimate and the int8 model's host arena, each said as such
        sram, arena = row["details"]["ethos_u"]["sram_bytes_estimated"], row["measurements"]["arena_bytes"]
        assert f"g_model_vela_sram_estimated = {sram};" in header and "an estimate, not a measurement" in header
        assert f"g_model_int8_host_arena_size = {arena};" in header and "g_model_arena_size" not in header
    plain = out / target(report, "tflm")["folder"]
    assert not (plain / "model_vela.tflite").exists() and "AddEthosU" not in (plain / "op_resolver.h").read_text()
    assert "AddConv2D()" in (plain / "op_resolver.h").read_text()
    plain_arena = target(report, "tflm")["measurements"]["arena_bytes"]
    assert f"g_model_arena_size = {plain_arena};" in (plain / "model_data.h").read_text()


def test_flash_is_the_size_of_the_compiled_model_array(run):
    report, out, _ = run
    for name, cpu in (("tflm", "cortex-m7"), (U55, "cortex-m55"), (U65, "cortex-m33")):
        row = target(report, name)
        flash = row["details"]["flash"]
        assert flash["method"].startswith(f"compiled with {firmware.compiler_version()} for {cpu}"), name
        assert row["measurements"]["flash_bytes"] == flash["bytes"] == flash["text"] + flash["data"]
        assert row["size_bytes"] == flash["bytes"]
        # compiled again here, for the same core: the same text+data
        again = firmware.compile_sources(out / row["folder"], ("model_data.cc",), cpu=cpu)
        assert again.flash_bytes == flash["bytes"], name
        embedded = (out / row["folder"] / ("model_vela.tflite" if name != "tflm" else "model.tflite")).stat().st_size
        assert flash["flatbuffer_bytes"] == embedded
        assert embedded <= flash["bytes"] <= embedded + 256, name  # the array plus its length word and alignment
    # the boards' figures are the budgets the run gated on (null in boards.json: no budget, never a guess)
    assert target(report, "tflm")["details"]["budgets"] == {"max_arena_bytes": 327680, "max_flash_bytes": 1048576}
    assert target(report, U55)["details"]["budgets"] == {}  # Corstone-300: no public RAM/flash figure
    assert target(report, U65)["details"]["budgets"] == {"max_arena_bytes": 262144}  # i.MX 93's M33 TCM


def _array_bytes(source: Path) -> bytes:
    """The bytes of the alignas(16) array model_data.cc holds."""
    text = source.read_text()
    body = text[text.index("{") + 1 : text.index("};")]
    return bytes(int(value, 16) for value in body.replace(",", " ").split())


# ---- edgeport doctor / setup: Vela and arm-none-eabi-gcc for the NPU variants --------------------------------


def _doctor_row(result) -> dict:
    rows = [row for row in json.loads(result.stdout)["plugins"] if row["kind"] == "converter variant"]
    assert [row["name"] for row in rows] == ["tflm:ethos-u*"], rows
    return rows[0]


def test_doctor_says_vela_and_the_arm_compiler_are_there_for_the_npu_variants():
    result = run_cli("doctor", "--json", "--target", U55)
    assert result.returncode == 0, result.stdout + result.stderr
    row = _doctor_row(result)
    assert row["available"] and row["wanted"] and not row["missing"] and not row["fix"]
    assert f"ethos-u-vela {vela.vela_version()}" in row["version"]
    assert f"{firmware.COMPILER} {firmware.compiler_path()}" in row["version"]
    plain = run_cli("doctor", "--json", "--target", "tflm")
    assert plain.returncode == 0 and not _doctor_row(plain)["wanted"]  # plain tflm needs no Vela
    table = run_cli("doctor", "--target", U65)
    assert table.returncode == 0 and "tflm:ethos-u*" in table.stdout, table.stdout
    check = run_cli("setup", "--check", "--target", "tflm")
    assert check.returncode == 0, check.stdout
    lines = [line.strip() for line in check.stdout.splitlines()]
    assert f"present  ethos-u-vela (python): {vela.vela_version()}" in lines  # setup --target tflm installs it
    assert f"present  {firmware.COMPILER} (system): {firmware.compiler_path()}" in lines


def test_doctor_without_the_arm_compiler_names_the_apt_package(tmp_path):
    result = run_cli("doctor", "--json", "--target", U55, env={"PATH": str(tmp_path)})  # nothing on PATH
    assert result.returncode == 1, result.stdout + result.stderr
    row = _doctor_row(result)
    assert not row["available"] and row["wanted"]
    assert row["missing"].startswith(f"{firmware.COMPILER} (")
    assert f"apt-get install -y {firmware.APT_PACKAGE}" in row["fix"] and "edgeport setup --target tflm" in row["fix"]
    assert f"ethos-u-vela {vela.vela_version()}" in row["version"]  # Vela itself is there


def test_doctor_and_setup_without_vela_name_the_npu_extra(tmp_path):
    """Vela hidden from this interpreter's package metadata (a sitecustomize), as on a machine without [npu]."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.metadata as m\n"
        "_version = m.version\n"
        "def version(name):\n"
        "    if name == 'ethos-u-vela':\n"
        "        raise m.PackageNotFoundError(name)\n"
        "    return _version(name)\n"
        "m.version = version\n"
    )
    env = {"PYTHONPATH": os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))}
    result = run_cli("doctor", "--json", "--target", U65, env=env)
    assert result.returncode == 1, result.stdout + result.stderr
    row = _doctor_row(result)
    assert not row["available"] and row["wanted"]
    assert row["missing"].startswith("ethos-u-vela (the tflm:ethos-u* variants: Vela")
    assert "pip install 'edgeport[npu]'" in row["fix"] and "edgeport setup --target tflm" in row["fix"]
    assert f"{firmware.COMPILER} {firmware.compiler_path()}" in row["version"]
    rows = {(r["kind"], r["name"]): r for r in json.loads(result.stdout)["plugins"]}
    assert rows[("converter", "tflm")]["available"]  # plain tflm does not need Vela
    assert run_cli("doctor", "--target", "tflm", env=env).returncode == 0
    check = run_cli("setup", "--check", "--target", "tflm", env=env)
    assert check.returncode == 1
    lines = [line.strip() for line in check.stdout.splitlines()]
    assert "missing  ethos-u-vela (python): pip install 'edgeport[npu]'" in lines, check.stdout
