from __future__ import annotations

import numpy as np
import pytest

from edgeport.checks.accuracy import compare, default_tolerance, measure
from edgeport.contracts import Precision


def feeds(values: np.ndarray, name: str = "y"):
    return [{name: v} for v in values]


def test_metrics_on_known_numbers():
    reference = np.array([[[1.0, 0.0, 0.0]], [[0.0, 2.0, 0.0]]], np.float32)
    candidate = reference + np.array([[[0.1, 0.0, 0.0]], [[0.0, 0.0, 0.0]]], np.float32)
    metrics = measure("y", reference, candidate)
    assert metrics.max_abs_error == pytest.approx(0.1)
    assert metrics.mean_abs_error == pytest.approx(0.1 / 6)
    assert metrics.rmse == pytest.approx(np.sqrt(0.01 / 6))
    assert metrics.snr_db == pytest.approx(10 * np.log10(5 / 0.01))
    assert metrics.top1_agreement == 1.0 and metrics.top5_agreement is None
    assert sum(metrics.abs_error_histogram[1]) == 6


def test_top1_and_top5_agreement_over_samples():
    rng = np.random.default_rng(0)
    reference = rng.normal(size=(10, 1, 20))
    candidate = reference.copy()
    candidate[:3, 0] = -candidate[:3, 0]  # three samples now pick another class
    metrics = measure("y", reference, candidate)
    assert metrics.top1_agreement == pytest.approx(0.7)
    assert metrics.top5_agreement == pytest.approx(0.7)


def test_all_failures_are_collected_not_raised():
    reference = [{"a": np.ones((1, 4)), "b": np.ones((1, 2))}] * 3
    candidate = [{"a": np.full((1, 4), np.nan), "c": np.ones((1, 2))}] * 3
    result = compare(reference, candidate, Precision(min_cosine=0.9))
    assert not result.passed
    assert any("a: 12 NaN/Inf" in f for f in result.failures)
    assert any("b: missing" in f for f in result.failures)


def test_shape_mismatch_and_count_mismatch_fail():
    result = compare(feeds(np.ones((2, 1, 4))), feeds(np.ones((2, 1, 5))), Precision())
    assert not result.passed and "shape [1, 5] != reference [1, 4]" in result.failures[0]
    result = compare(feeds(np.ones((2, 1, 4))), feeds(np.ones((1, 1, 4))), Precision())
    assert "1 results for 2 samples" in result.failures[0]


def test_tolerances_per_precision_and_permutations():
    reference = np.random.default_rng(1).normal(size=(4, 1, 3, 5, 2)).astype(np.float32)
    noisy = reference + np.random.default_rng(2).normal(scale=0.01, size=reference.shape).astype(np.float32)
    assert not compare(feeds(reference), feeds(noisy), default_tolerance("fp32")).passed
    assert compare(feeds(reference), feeds(noisy), default_tolerance("fp16")).passed
    nchw = np.transpose(reference, (0, 1, 4, 2, 3))  # candidate produced channels-first
    result = compare(feeds(reference), feeds(nchw), default_tolerance("fp32"), {"y": (0, 3, 1, 2)})
    assert result.passed and result.outputs[0].max_abs_error == 0.0
