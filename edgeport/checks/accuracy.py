"""The accuracy check, shared by every target: same inputs, reference vs artifact, every sample.

Per output: max/mean absolute error, RMSE, cosine similarity, SNR (dB) and, for classifier-like outputs
(rank 2, more than one class), top-1 and top-5 agreement. Every problem (missing output, shape mismatch,
NaN/Inf, a tolerance missed) is collected; one verdict per target at the end.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeport.data import Feeds, Precision

# Defaults per artifact precision. Quantized targets are judged by cosine and top-1 agreement.
DEFAULT_TOLERANCES: dict[str, Precision] = {
    "fp32": Precision(min_cosine=0.9999, min_snr_db=40.0),
    "fp16": Precision(min_cosine=0.999, min_snr_db=25.0),
    "dynamic": Precision(min_cosine=0.99, min_top1_agreement=0.9),
    "int16x8": Precision(min_cosine=0.99, min_top1_agreement=0.9),
    "int8": Precision(min_cosine=0.95, min_top1_agreement=0.9),
    "uint8": Precision(min_cosine=0.98, min_top1_agreement=0.9),
    "uint16": Precision(min_cosine=0.999, min_top1_agreement=0.95),
}


def default_tolerance(precision: str) -> Precision:
    return DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["int8"])


@dataclass(frozen=True)
class OutputMetrics:
    name: str
    shape: tuple[int, ...]
    max_abs_error: float
    mean_abs_error: float
    rmse: float
    cosine: float
    snr_db: float
    top1_agreement: float | None
    top5_agreement: float | None
    abs_error_histogram: tuple[tuple[float, ...], tuple[int, ...]]  # (bin edges, counts), for reports


@dataclass(frozen=True)
class AccuracyResult:
    passed: bool
    samples: int
    tolerance: Precision
    outputs: tuple[OutputMetrics, ...]
    failures: tuple[str, ...]

    def worst(self) -> str:
        return self.failures[0] if self.failures else ""


def _snr_db(reference: np.ndarray, error: np.ndarray) -> float:
    signal, noise = float(np.sum(reference**2)), float(np.sum(error**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if float(np.abs(a - b).max(initial=0.0)) == 0.0 else 0.0
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0))


def _topk_agreement(reference: np.ndarray, candidate: np.ndarray, k: int) -> float:
    """Share of rows whose reference top-1 class is among the candidate's top-k."""
    ref_top1 = np.argmax(reference, axis=-1)
    cand_topk = np.argsort(-candidate, axis=-1, kind="stable")[..., :k]
    return float(np.mean(np.any(cand_topk == ref_top1[..., None], axis=-1)))


def is_classifier_like(feed_shape: tuple[int, ...]) -> bool:
    """One vector of class scores per feed: [C] or [1, C] with C > 1."""
    return 1 <= len(feed_shape) <= 2 and feed_shape[-1] > 1 and all(d == 1 for d in feed_shape[:-1])


def measure(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputMetrics:
    """Metrics over every sample of one output; arrays are [samples, ...feed shape]."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    error = np.abs(cand - ref)
    rows = ref.reshape(-1, ref.shape[-1]) if ref.ndim >= 2 else ref.reshape(-1, 1)
    cand_rows = cand.reshape(rows.shape)
    classifier = is_classifier_like(tuple(int(d) for d in reference.shape[1:]))
    top1 = _topk_agreement(rows, cand_rows, 1) if classifier else None
    top5 = _topk_agreement(rows, cand_rows, 5) if classifier and rows.shape[-1] > 5 else None
    flat_error = error.ravel()
    upper = float(flat_error.max(initial=0.0)) or 1e-12
    counts, edges = np.histogram(flat_error, bins=30, range=(0.0, upper))
    return OutputMetrics(
        name=name,
        shape=tuple(int(d) for d in reference.shape[1:]),
        max_abs_error=float(flat_error.max(initial=0.0)),
        mean_abs_error=float(flat_error.mean()) if flat_error.size else 0.0,
        rmse=float(np.sqrt(np.mean(error**2))) if error.size else 0.0,
        cosine=_cosine(ref.ravel(), cand.ravel()),
        snr_db=_snr_db(ref, cand - ref),
        top1_agreement=top1,
        top5_agreement=top5,
        abs_error_histogram=(tuple(float(e) for e in edges), tuple(int(c) for c in counts)),
    )


def _gate(metrics: OutputMetrics, tolerance: Precision) -> list[str]:
    problems = []
    name = metrics.name
    if tolerance.min_cosine is not None and not metrics.cosine >= tolerance.min_cosine:
        problems.append(f"{name}: cosine {metrics.cosine:.6f} < {tolerance.min_cosine}")
    if tolerance.min_snr_db is not None and not metrics.snr_db >= tolerance.min_snr_db:
        problems.append(f"{name}: SNR {metrics.snr_db:.1f} dB < {tolerance.min_snr_db} dB")
    if tolerance.max_abs_error is not None and not metrics.max_abs_error <= tolerance.max_abs_error:
        problems.append(f"{name}: max abs error {metrics.max_abs_error:.3g} > {tolerance.max_abs_error}")
    if (
        tolerance.min_top1_agreement is not None
        and metrics.top1_agreement is not None
        and not metrics.top1_agreement >= tolerance.min_top1_agreement
    ):
        problems.append(f"{name}: top-1 agreement {metrics.top1_agreement:.1%} < {tolerance.min_top1_agreement:.1%}")
    if (
        tolerance.min_top5_agreement is not None
        and metrics.top5_agreement is not None
        and not metrics.top5_agreement >= tolerance.min_top5_agreement
    ):
        problems.append(f"{name}: top-5 agreement {metrics.top5_agreement:.1%} < {tolerance.min_top5_agreement:.1%}")
    return problems


def compare(
    reference: Sequence[Feeds],
    candidate: Sequence[Feeds],
    tolerance: Precision,
    output_permutations: Mapping[str, tuple[int, ...]] | None = None,
) -> AccuracyResult:
    """Compare every sample of every reference output with the candidate's; collect every failure."""
    failures: list[str] = []
    if len(candidate) != len(reference):
        failures.append(f"runtime returned {len(candidate)} results for {len(reference)} samples")
        return AccuracyResult(
            passed=False, samples=len(reference), tolerance=tolerance, outputs=(), failures=tuple(failures)
        )
    names = list(reference[0]) if reference else []
    metrics = []
    for name in names:
        if any(name not in outputs for outputs in candidate):
            present = ", ".join(sorted(candidate[0])) if candidate else "(none)"
            failures.append(f"{name}: missing from the artifact's outputs (it has: {present})")
            continue
        permutation = (output_permutations or {}).get(name)
        refs = [
            np.transpose(np.asarray(r[name]), permutation) if permutation else np.asarray(r[name]) for r in reference
        ]
        cands = [np.asarray(c[name]) for c in candidate]
        bad_shape = next(
            ((i, r.shape, c.shape) for i, (r, c) in enumerate(zip(refs, cands, strict=False)) if r.shape != c.shape),
            None,
        )
        if bad_shape:
            i, want, got = bad_shape
            failures.append(f"{name}: shape {list(got)} != reference {list(want)} (sample {i})")
            continue
        stacked = np.stack(cands)
        if not np.issubdtype(stacked.dtype, np.number) and stacked.dtype != np.bool_:
            equal = all(np.array_equal(r, c) for r, c in zip(refs, cands, strict=False))
            if not equal:
                failures.append(f"{name}: values differ from the reference")
            continue
        non_finite = ~np.isfinite(stacked.astype(np.float64))
        ref_non_finite = ~np.isfinite(np.stack(refs).astype(np.float64))
        if np.any(non_finite & ~ref_non_finite):
            failures.append(
                f"{name}: {int(np.sum(non_finite & ~ref_non_finite))} NaN/Inf values where the reference is finite"
            )
            continue
        result = measure(name, np.stack(refs), stacked)
        metrics.append(result)
        failures.extend(_gate(result, tolerance))
    return AccuracyResult(
        passed=not failures,
        samples=len(reference),
        tolerance=tolerance,
        outputs=tuple(metrics),
        failures=tuple(failures),
    )
