from __future__ import annotations

import numpy as np
import pytest

from edgeport.contracts import Signature, TensorSpec
from edgeport.errors import UsageError
from edgeport.model.samples import (
    Preprocess,
    SampleRequest,
    chosen_dimensions,
    conform,
    load_samples,
    parse_input_ranges,
    parse_input_shapes,
    synthetic_samples,
)

IMAGE = Signature("serving_default", (TensorSpec("image", "float32", (None, 8, 8, 1)),), ())
TOKENS = Signature("serving_default", (TensorSpec("ids", "int32", (1, 12)), TensorSpec("mask", "bool", (1, 12))), ())


def test_synthetic_samples_are_deterministic_typed_and_ranged():
    request = SampleRequest(count=5, seed=7, input_ranges={"ids": (3, 9)})
    first, second = synthetic_samples(TOKENS, request), synthetic_samples(TOKENS, request)
    assert first.synthetic and first.count == 5
    np.testing.assert_array_equal(first.arrays["ids"], second.arrays["ids"])
    assert first.arrays["ids"].dtype == np.int32 and first.arrays["ids"].shape == (5, 1, 12)
    assert first.arrays["ids"].min() >= 3 and first.arrays["ids"].max() < 9
    assert first.arrays["mask"].dtype == np.bool_
    assert first.feed(2)["ids"].shape == (1, 12)


def test_dynamic_batch_becomes_one_and_other_dynamic_dims_take_two_chosen_sizes():
    assert synthetic_samples(IMAGE, SampleRequest(count=2)).feed(0)["image"].shape == (1, 8, 8, 1)
    seq = Signature("s", (TensorSpec("x", "float32", (None, None, 4)),), ())
    assert synthetic_samples(seq, SampleRequest()).feed(0)["x"].shape == (1, 16, 4)
    assert synthetic_samples(seq, SampleRequest(second_sizes=True)).feed(0)["x"].shape == (1, 24, 4)
    image = Signature("i", (TensorSpec("image", "float32", (None, None, None, 3)),), ())
    assert synthetic_samples(image, SampleRequest()).feed(0)["image"].shape == (1, 64, 64, 3)
    assert synthetic_samples(image, SampleRequest(second_sizes=True)).feed(0)["image"].shape == (1, 96, 96, 3)
    assert chosen_dimensions(seq, SampleRequest()) == {"x": "x: float32[?,?,4]: checked at [1, 16, 4] and [1, 24, 4]"}
    assert chosen_dimensions(seq, SampleRequest(input_shapes={"x": (1, 9, 4)})) == {}
    assert chosen_dimensions(IMAGE, SampleRequest()) == {}  # only a dynamic batch: nothing chosen
    samples = synthetic_samples(seq, SampleRequest(input_shapes={"x": (1, 9, 4)}))
    assert samples.feed(0)["x"].shape == (1, 9, 4)
    with pytest.raises(UsageError, match="does not fit"):
        synthetic_samples(seq, SampleRequest(input_shapes={"x": (1, 9, 5)}))


def test_conform_accepts_rows_or_full_feeds_and_names_bad_inputs():
    rows = conform(IMAGE, {"image": np.zeros((10, 8, 8, 1), np.float32)}, "data")
    assert rows["image"].shape == (10, 1, 8, 8, 1)
    feeds = conform(IMAGE, {"image": np.zeros((3, 1, 8, 8, 1), np.float64)}, "data")
    assert feeds["image"].dtype == np.float32  # float64 -> float32 is the same kind
    with pytest.raises(UsageError, match="'image' has shape \\[10, 8, 8, 3\\]"):
        conform(IMAGE, {"image": np.zeros((10, 8, 8, 3), np.float32)}, "data")
    with pytest.raises(UsageError, match="'ids' is float32, the signature wants int32"):
        conform(TOKENS, {"ids": np.zeros((2, 12), np.float32), "mask": np.ones((2, 12), bool)}, "data")
    with pytest.raises(UsageError, match="input 'mask' is missing"):
        conform(TOKENS, {"ids": np.zeros((2, 12), np.int32)}, "data")
    with pytest.raises(UsageError, match="different sample counts"):
        conform(TOKENS, {"ids": np.zeros((2, 12), np.int32), "mask": np.ones((3, 12), bool)}, "data")


def test_npy_image_folder_and_bad_files(tmp_path):
    from PIL import Image

    np.save(tmp_path / "x.npy", np.ones((4, 8, 8, 1), np.float32))
    assert load_samples(IMAGE, SampleRequest(data=tmp_path / "x.npy")).count == 4
    with pytest.raises(UsageError, match="has 2 inputs"):
        load_samples(TOKENS, SampleRequest(data=tmp_path / "x.npy"))
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 30), 255 * (i % 2), np.uint8)).save(folder / f"{i}.png")
    images = load_samples(IMAGE, SampleRequest(data=folder, preprocess=Preprocess.parse("scale=1/255,offset=-0.5")))
    assert images.count == 3 and images.feed(0)["image"].shape == (1, 8, 8, 1)
    assert images.arrays["image"].min() == pytest.approx(-0.5) and images.arrays["image"].max() == pytest.approx(0.5)
    (tmp_path / "junk.npz").write_text("not an archive")
    with pytest.raises(UsageError, match="cannot be read as .npz"):
        load_samples(IMAGE, SampleRequest(data=tmp_path / "junk.npz"))
    with pytest.raises(UsageError, match="unknown format"):
        load_samples(IMAGE, SampleRequest(data=tmp_path / "x.csv" if (tmp_path / "x.csv").write_text("1") else None))


def test_cli_value_parsers():
    assert parse_input_ranges(["x=-1:1"]) == {"x": (-1.0, 1.0)}
    assert parse_input_shapes(["x=1,224,224,3"]) == {"x": (1, 224, 224, 3)}
    with pytest.raises(UsageError, match="NAME=LO:HI"):
        parse_input_ranges(["x=1"])
    with pytest.raises(UsageError, match="NAME=D0,D1"):
        parse_input_shapes(["x=a,b"])
    with pytest.raises(UsageError, match="--preprocess"):
        Preprocess.parse("gamma=2")


def test_a_data_file_wrong_on_its_own_is_refused_before_the_model_loads(tmp_path):
    """NaN values, no samples, an unknown format, a truncated archive: said before TensorFlow starts. Shown
    with a model whose saved_model.pb is corrupt, which the loader would report first."""
    from edgeport_testing import assert_one_line_error, run_cli

    model = tmp_path / "model"
    model.mkdir()
    (model / "saved_model.pb").write_bytes(b"\x08\x01garbage")
    nan = tmp_path / "nan.npz"
    np.savez(nan, features=np.array([[1.0, np.nan]], np.float32), labels=np.array([np.nan]))
    empty = tmp_path / "empty.npz"
    np.savez(empty, features=np.zeros((0, 4), np.float32))
    csv = tmp_path / "data.csv"
    csv.write_text("1,2\n")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(nan.read_bytes()[:40])
    cases = [
        (["--data", nan], ("input 'features' has 1 NaN/Inf values (first in sample 0)",)),
        (["--data", nan, "--labels", f"{nan}:labels"], ("'features'",)),  # the labels key is not an input
        (["--data", empty], ("no samples",)),
        (["--data", csv], ("unknown format .csv",)),
        (["--calibration", truncated], ("cannot be read as .npz",)),
    ]
    for extra, fragments in cases:
        result = run_cli("convert", model, "-t", "tflite", "-o", tmp_path / "out", "--no-bench", *extra)
        assert_one_line_error(result, 2, *fragments)
        assert "saved_model.pb" not in result.stderr and not (tmp_path / "out").exists()


def test_the_precheck_and_the_samples_read_one_file_once_and_a_rewritten_file_again(tmp_path):
    from edgeport.model.samples import precheck_data, read_npz

    data = tmp_path / "d.npz"
    np.savez(data, x=np.ones((2, 3), np.float32))
    precheck_data(data)
    first, again = read_npz(data), read_npz(data)
    assert first["x"] is again["x"] and not first["x"].flags.writeable  # shared, so never changed in place
    np.savez(data, x=np.zeros((5, 3), np.float32))
    assert read_npz(data)["x"].shape == (5, 3)
    precheck_data(tmp_path)  # an image folder: checked when read, against the signature
    np.save(tmp_path / "one.npy", np.array([np.nan], np.float32))
    precheck_data(tmp_path / "one.npy")  # .npy: its input's name is the signature's, so NaN is said then
