"""Synthetic samples are bounded by memory: a --samples count that cannot fit is refused before allocating."""

from __future__ import annotations

import time

import pytest

from edgeport.data import Signature, TensorSpec
from edgeport.errors import UsageError
from edgeport.model import samples as samples_module
from edgeport.model.samples import SampleRequest, bytes_per_sample, check_sample_memory, synthetic_samples
from edgeport_testing import run_cli

IMAGES = Signature(
    key="serving_default",
    inputs=(TensorSpec("image", "float32", (None, 8, 8, 1)),),
    outputs=(TensorSpec("scores", "float32", (None, 10)),),
)


def test_bytes_per_sample_counts_feeds_and_reference_outputs():
    assert bytes_per_sample(IMAGES, SampleRequest()) == 8 * 8 * 4 + 10 * 4
    dynamic = Signature(
        key="s",
        inputs=(TensorSpec("sequence", "float32", (None, None, 3)), TensorSpec("ids", "int64", (None, 2))),
        outputs=(TensorSpec("total", "float32", (None, None)), TensorSpec("any", "float32", None)),
    )
    # the length edgeport picks (16), outputs' dynamic dimensions as the largest input dimension
    assert bytes_per_sample(dynamic, SampleRequest()) == 16 * 3 * 4 + 2 * 8 + 16 * 4 + 16 * 3 * 4
    assert bytes_per_sample(dynamic, SampleRequest(input_shapes={"sequence": (1, 100, 3)})) > 100 * 3 * 4


def test_a_count_beyond_the_memory_budget_is_refused_in_one_line_naming_what_fits(monkeypatch):
    monkeypatch.setattr(samples_module, "mem_available_bytes", lambda: 8 * 2**30)
    started = time.perf_counter()
    with pytest.raises(UsageError) as caught:
        synthetic_samples(IMAGES, SampleRequest(count=1_000_000_000))
    assert time.perf_counter() - started < 1  # refused before anything is allocated
    message = caught.value.message
    assert "\n" not in message and message.startswith("--samples 1000000000 needs about 275.67 GB")
    fits = 2 * 2**30 // 296  # a quarter of 8 GiB, 296 B a sample
    assert f"(296 B each); at most {fits} fit (a quarter of the 8.00 GB of memory available)" in message
    check_sample_memory(IMAGES, SampleRequest(count=fits))  # the largest count that fits is taken
    with pytest.raises(UsageError):
        check_sample_memory(IMAGES, SampleRequest(count=fits + 1))


def test_without_meminfo_the_budget_is_fixed(monkeypatch):
    monkeypatch.setattr(samples_module, "mem_available_bytes", lambda: None)
    with pytest.raises(UsageError, match=r"2\.00 GB, as this system shows no MemAvailable"):
        check_sample_memory(IMAGES, SampleRequest(count=10**8))
    assert synthetic_samples(IMAGES, SampleRequest(count=64)).count == 64


def test_the_cli_refuses_a_billion_samples_with_exit_2(models, tmp_path):
    started = time.monotonic()
    result = run_cli(
        "convert", models["multi"], "-t", "tflite", "-o", tmp_path, "--samples", "1000000000", "--no-history"
    )
    errors = [line for line in result.stderr.splitlines() if line.startswith("edgeport: error:")]
    assert result.returncode == 2 and len(errors) == 1, result.stderr  # after the progress lines of the load
    assert errors[0].startswith("edgeport: error: --samples 1000000000 needs about ")
    assert errors[0].endswith("pass a smaller --samples") and "Traceback" not in result.stderr
    assert time.monotonic() - started < 120
