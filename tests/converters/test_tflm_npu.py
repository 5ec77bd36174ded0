"""tflm:ethos-u*: real Vela (the [npu] extra) and real arm-none-eabi-gcc (`edgeport setup`), never skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgeport.contracts import ConversionJob, SampleSet, TargetSpec
from edgeport.converters.tflm import firmware, vela
from edgeport.converters.tflm.boards import board_profile, boards
from edgeport.converters.tflm.converter import TFLMConverter, TFLMOptions
from edgeport.errors import UsageError
from edgeport.model.savedmodel import load_model
from edgeport.model.tf_quiet import import_tensorflow
from edgeport.run.requirements import extra_specifiers

SHAPE = (1, 16, 16, 3)


def _save_cnn(folder: Path, *, space_to_depth: bool) -> Path:
    tf = import_tensorflow()
    rng = np.random.default_rng(0)
    kernel = tf.constant(rng.normal(0, 0.3, (3, 3, 3, 8)).astype("float32"))
    dense = tf.constant(rng.normal(0, 0.3, (32 if space_to_depth else 8, 4)).astype("float32"))

    class Net(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec((None, *SHAPE[1:]), tf.float32, name="image")])
        def serve(self, image):
            x = tf.nn.relu(tf.nn.conv2d(image, kernel, 1, "VALID"))
            if space_to_depth:
                x = tf.nn.space_to_depth(x, 2)  # an op Vela has no NPU mapping for: a CPU fallback
            x = tf.reduce_mean(x, axis=[1, 2])
            return {"scores": tf.matmul(x, dense)}

    net = Net()
    tf.saved_model.save(net, str(folder), signatures={"serving_default": net.serve})
    return folder


def _convert(folder: Path, workdir: Path, variant: str, **options):
    calibration = SampleSet({"image": np.random.default_rng(1).random((8, *SHAPE), dtype=np.float32)}, "t", False)
    workdir.mkdir(parents=True, exist_ok=True)
    job = ConversionJob(
        model=load_model(folder),
        target=TargetSpec.parse(f"tflm:{variant}" if variant else "tflm"),
        options=TFLMOptions(**options),
        calibration=calibration,
        workdir=workdir,
    )
    return TFLMConverter().convert(job)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("npu-models")
    return _save_cnn(root / "cnn", space_to_depth=False), _save_cnn(root / "s2d", space_to_depth=True)


@pytest.fixture(scope="module")
def npu_cnn(models, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("npu-cnn")
    return _convert(models[0], workdir, "ethos-u55-128", board="corstone-300"), workdir


def test_make_test_installed_vela_and_the_arm_compiler():
    assert vela.vela_version(), "ethos-u-vela missing: `make test` installs the [npu] extra"
    assert shutil.which(firmware.COMPILER), "arm-none-eabi-g++ missing: `edgeport setup` installs gcc-arm-none-eabi"


def test_vela_compiles_the_int8_model_and_its_estimate_is_positive(npu_cnn):
    artifact, workdir = npu_cnn
    assert artifact.main_file == "model.tflite"  # the int8 model the check runs; Vela's file beside it
    assert {"model.tflite", "model_vela.tflite", "model_data.cc", "op_resolver.h"} <= set(artifact.files)
    vela_bytes = (workdir / "model_vela.tflite").read_bytes()
    assert vela_bytes[4:8] == b"TFL3" and b"ethos-u" in vela_bytes
    assert "AddEthosU()" in (workdir / "op_resolver.h").read_text()
    estimate = artifact.details["ethos_u"]
    assert estimate["basis"].endswith("not measured")
    assert estimate["accelerator"] == "ethos-u55-128"
    assert (estimate["system_config"], estimate["memory_mode"]) == ("Ethos_U55_High_End_Embedded", "Shared_Sram")
    for key in ("npu_cycles_estimated", "total_cycles_estimated", "inference_ms_estimated", "sram_bytes_estimated"):
        assert estimate[key] > 0, key
    assert estimate["cpu_fallbacks"] == []
    said = " ".join(artifact.notes)
    assert "estimated, not measured" in said and "NPU's numerics were not run" in said
    json.dumps(artifact.details)  # report.json can hold it


def test_flash_is_the_compiled_model_array(npu_cnn):
    artifact, workdir = npu_cnn
    flash = artifact.details["flash"]
    size = len((workdir / "model_vela.tflite").read_bytes())
    assert flash["method"].startswith("compiled with arm-none-eabi-gcc") and "cortex-m55" in flash["method"]
    assert artifact.measurements["flash_bytes"] == flash["bytes"]
    assert size <= flash["bytes"] <= size + 256  # the array plus its length word and alignment
    assert "not included" in flash["not_included"]


def test_an_op_vela_cannot_map_is_a_cpu_fallback_with_vela_reason(models, tmp_path):
    artifact = _convert(models[1], tmp_path / "s2d", "ethos-u55-128")
    fallbacks = artifact.details["ethos_u"]["cpu_fallbacks"]
    assert [f["op"] for f in fallbacks] == ["SPACE_TO_DEPTH"]
    assert fallbacks[0]["reason"] == "Unsupported opType"  # Vela's own words
    assert any("SPACE_TO_DEPTH" in w and "CPU fallback" in w for w in artifact.warnings)  # the pre-check too
    assert any("CPU fallback (Vela's reasons): SPACE_TO_DEPTH" in n for n in artifact.notes)
    assert "AddSpaceToDepth()" in (tmp_path / "s2d" / "op_resolver.h").read_text()


def test_preflight_names_the_fallback_before_converting(models):
    model = load_model(models[1])
    findings = TFLMConverter().preflight(model, TFLMOptions(board="himax-we2"))
    fallback = [f for f in findings if "CPU fallback" in f.message]
    assert fallback and "SPACE_TO_DEPTH" in fallback[0].message and fallback[0].severity == "warning"


def test_plain_tflm_flash_is_compiled_too(models, tmp_path):
    artifact = _convert(models[0], tmp_path / "cpu", "", board="stm32f746-discovery")
    assert "cortex-m7" in artifact.details["flash"]["method"]
    assert "ethos_u" not in artifact.details
    esp = _convert(models[0], tmp_path / "esp", "", board="esp32")
    assert esp.details["flash"]["method"].startswith("estimated from the flatbuffer size")


def test_npu_boards_cite_sources_and_name_what_was_not_found():
    npu_boards = {name: profile for name, profile in boards().items() if profile.get("npu")}
    assert {"corstone-300", "corstone-310", "alif-ensemble-e7", "nxp-imx93", "himax-we2"} <= set(npu_boards)
    for name, profile in npu_boards.items():
        assert profile["sources"], name
        assert vela.config_problem(profile["vela_system_config"], profile["vela_memory_mode"]) is None, name
        for key in ("ram_bytes", "flash_bytes", "npu_clock_hz"):
            assert profile[key] is not None or any(key in item for item in profile["not_found"]), (name, key)
    assert board_profile("corstone-300")["ram_bytes"] is None
    assert TFLMOptions(board="corstone-300").budgets() == {}


@pytest.mark.parametrize(
    "variant, options, match",
    [
        ("ethos-u65-256", {"board": "corstone-300"}, "carries an ethos-u55"),
        ("ethos-u55-128", {"vela_system_config": "Nope"}, "unknown Vela system configuration 'Nope'"),
        ("ethos-u55-128", {"vela_memory_mode": "Nope"}, "unknown Vela memory mode 'Nope'"),
        ("", {"vela_memory_mode": "Shared_Sram"}, "NPU variant only"),
    ],
)
def test_bad_npu_options_are_usage_errors(variant, options, match):
    with pytest.raises(UsageError, match=match):
        TFLMConverter().validate_options(variant, TFLMOptions(**options))


def test_setup_installs_vela_for_tflm_but_plain_tflm_does_not_need_it():
    converter = TFLMConverter()
    (needed,) = [r for r in converter.requirements() if r.name == "ethos-u-vela"]
    assert needed.kind == "python" and needed.fix == "pip install 'edgeport[npu]'"
    assert needed.install == (extra_specifiers("npu") or ("ethos-u-vela",))  # pip, pyproject's [npu] pins
    assert "ethos-u-vela" not in {r.name for r in converter.variant_requirements("")}
    assert {"ethos-u-vela", firmware.COMPILER} <= {r.name for r in converter.variant_requirements("ethos-u85-256")}
