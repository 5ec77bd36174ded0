"""The accuracy check, shared by every target: same inputs, reference vs artifact, every sample.

Per output: max/mean absolute error, RMSE, cosine similarity, SNR (dB) and, for classifier-like outputs
([C] or [1, C] per sample, more than one class), top-1 and top-5 agreement. Every problem (missing output,
shape mismatch, NaN/Inf, a tolerance missed, nothing compared) is collected; one verdict per target at the end.

An agreement measured on n samples is a proportion with sampling error: each comes with its 95 % Wilson
score interval, and its gate fails when the interval lies wholly below the gate (the samples show, at 95 %
confidence, agreement under the gate). With the default 32 synthetic samples a 90 % gate fails at 25/32
(78 %) agreement and passes at 26/32; with 8 samples it would pass 6/8, which is why the default is not 8.
A gate that cannot apply to an output (top-1 on an output that is not [C] or [1, C]) is said in `notes`.

The reference's own sensitivity is measured too: when every output of the SavedModel is the same on every
sample (largest per-element std across the samples at most FLAT_OUTPUT of the output's mean magnitude), the
samples test nothing (a float input cast to ids and drawn from [0, 1): every id 0) and any artifact that
outputs that constant agrees with cosine 1. The result is then `inconclusive` (the reason said), which
report/files makes a verdict of its own, never "passed"; an output constant beside others that vary is a note.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from edgeport.checks.task import TaskAccuracy
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


CONFIDENCE_Z = 1.96  # 95 % two-sided


def default_tolerance(precision: str) -> Precision:
    """The defaults for a precision; a precision edgeport has no defaults for gets fp32's, the strictest."""
    return DEFAULT_TOLERANCES.get(precision, DEFAULT_TOLERANCES["fp32"])


def wilson_interval(agreeing: int, total: int, z: float = CONFIDENCE_Z) -> tuple[float, float]:
    """The Wilson score interval of a proportion agreeing/total (0..1 each end)."""
    if total <= 0:
        return (0.0, 1.0)
    p = agreeing / total
    denominator = 1 + z * z / total
    centre = p + z * z / (2 * total)
    spread = z * float(np.sqrt(p * (1 - p) / total + z * z / (4 * total * total)))
    return (max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator))


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
    rows: int = 0  # how many class-score vectors the agreements are proportions of
    top1_interval: tuple[float, float] | None = None  # 95 % Wilson interval of top1_agreement
    top5_interval: tuple[float, float] | None = None
    top1_ties: int = 0  # rows counted as agreeing because the artifact scores the reference's class as its top
    reference_spread: float | None = None  # the reference's largest std across samples / its mean magnitude


@dataclass(frozen=True)
class AccuracyResult:
    passed: bool
    samples: int
    tolerance: Precision
    outputs: tuple[OutputMetrics, ...]
    failures: tuple[str, ...]
    notes: tuple[str, ...] = ()  # gates that could not apply, and why
    task: TaskAccuracy | None = None  # against --labels (checks/task), on the first input size
    inconclusive: str = ""  # why the comparison shows nothing (the reference barely varies), when it does not

    def worst(self) -> str:
        return self.failures[0] if self.failures else ""


def _snr_db(reference: np.ndarray, error: np.ndarray) -> float:
    if reference.size == 0:  # nothing compared: no ratio, never a pass
        return float("nan")
    signal, noise = float(np.sum(reference**2)), float(np.sum(error**2))
    if noise == 0.0:
        return float("inf")
    if signal == 0.0:
        return float("-inf")
    return 10.0 * np.log10(signal / noise)


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    if a.size == 0:  # nothing compared: undefined, not 1.0
        return float("nan")
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    if norm == 0.0:
        return 1.0 if float(np.abs(a - b).max(initial=0.0)) == 0.0 else 0.0
    return float(np.clip(np.dot(a, b) / norm, -1.0, 1.0))


FLAT_REFERENCE = 1e-3  # a reference row whose scores differ by less than this share of their size ranks nothing


def _in_topk(reference: np.ndarray, candidate: np.ndarray, k: int) -> np.ndarray:
    """Per row: does the candidate score the reference's top-1 class among its k highest scores?

    A class the candidate scores exactly level with its k-th highest is among them: a quantized output that
    cannot tell two classes apart (the same int8 level) ranks them equal, and which of the two its argmax
    returns is the order of the classes, not the model. Not in a row that is one value throughout (an output
    that tells no class from any other: all zeros), unless the reference's own scores differ by less than
    FLAT_REFERENCE of their size (a random-weight softmax at 0.1 +- 1e-6: no class to tell apart).
    """
    ref_top1 = np.argmax(reference, axis=-1)
    by_order = np.any(np.argsort(-candidate, axis=-1, kind="stable")[..., :k] == ref_top1[..., None], axis=-1)
    kth_highest = -np.sort(-candidate, axis=-1)[..., min(k, candidate.shape[-1]) - 1]
    level = np.take_along_axis(candidate, ref_top1[..., None], axis=-1)[..., 0] >= kth_highest
    varied = candidate.max(axis=-1) > candidate.min(axis=-1)
    spread = reference.max(axis=-1) - reference.min(axis=-1)
    flat_reference = spread <= FLAT_REFERENCE * np.abs(reference).max(axis=-1)
    return by_order | (level & (varied | flat_reference))


def _top1_ties(reference: np.ndarray, candidate: np.ndarray) -> int:
    """Rows whose argmax differs from the reference's only because the candidate ties the two classes."""
    agreeing = _in_topk(reference, candidate, 1)
    return int(np.sum(agreeing & (np.argmax(candidate, axis=-1) != np.argmax(reference, axis=-1))))


def is_classifier_like(feed_shape: tuple[int, ...]) -> bool:
    """One vector of class scores per feed: [C] or [1, C] with C > 1."""
    return 1 <= len(feed_shape) <= 2 and feed_shape[-1] > 1 and all(d == 1 for d in feed_shape[:-1])


def measure(name: str, reference: np.ndarray, candidate: np.ndarray) -> OutputMetrics:
    """Metrics over every sample of one output; arrays are [samples, ...feed shape]."""
    ref = reference.astype(np.float64)
    cand = candidate.astype(np.float64)
    error = np.abs(cand - ref)
    rows = ref.reshape(-1, ref.shape[-1]) if ref.ndim >= 2 and ref.shape[-1] else ref.reshape(-1, 1)
    cand_rows = cand.reshape(rows.shape)
    classifier = is_classifier_like(tuple(int(d) for d in reference.shape[1:]))
    top1 = float(np.mean(_in_topk(rows, cand_rows, 1))) if classifier else None
    top5 = float(np.mean(_in_topk(rows, cand_rows, 5))) if classifier and rows.shape[-1] > 5 else None
    count = rows.shape[0]

    def interval(agreement: float | None) -> tuple[float, float] | None:
        return None if agreement is None else wilson_interval(round(agreement * count), count)

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
        rows=count if classifier else 0,
        top1_interval=interval(top1),
        top5_interval=interval(top5),
        top1_ties=_top1_ties(rows, cand_rows) if classifier else 0,
    )


FLAT_OUTPUT = 1e-6  # a reference whose samples differ by less than this share of its magnitude tells nothing apart


def reference_spread(reference: np.ndarray) -> tuple[float, float]:
    """(largest per-element std across the samples (axis 0), mean magnitude) of one output's reference."""
    if reference.shape[0] < 2 or reference.size == 0:
        return float("nan"), float("nan")
    values = reference.astype(np.float64)
    return float(values.std(axis=0).max()), float(np.abs(values).mean())


def _relative(spread: float, magnitude: float) -> float:
    if not np.isfinite(spread):
        return float("nan")
    return spread / magnitude if magnitude > 0 else (0.0 if spread == 0 else float("inf"))


def _flat(metrics: OutputMetrics) -> bool:
    return metrics.reference_spread is not None and metrics.reference_spread <= FLAT_OUTPUT


def _sensitivity(metrics: list[OutputMetrics], spreads: Mapping[str, tuple[float, float]], samples: int):
    """(why the comparison is inconclusive or "", notes): inconclusive when every output compared is flat."""
    flat = [m for m in metrics if _flat(m)]
    if not flat:
        return "", []
    said = [
        f"{m.name} (largest std across samples {spreads[m.name][0]:.3g}, mean magnitude {spreads[m.name][1]:.3g})"
        for m in flat
    ]
    if len(flat) < len(metrics):
        return "", [
            f"{text}: the SavedModel gives the same value on every sample; only the others test" for text in said
        ]
    return (
        f"inconclusive: the SavedModel's outputs barely vary across the {samples} samples ({'; '.join(said)}), so any "
        "artifact that outputs that constant agrees; feed inputs the model responds to (--data, --input-range)"
    ), []


def _gate(metrics: OutputMetrics, tolerance: Precision) -> list[str]:
    problems = []
    name = metrics.name
    if tolerance.min_cosine is not None and not metrics.cosine >= tolerance.min_cosine:
        problems.append(f"{name}: cosine {metrics.cosine:.6f} < {tolerance.min_cosine}")
    if tolerance.min_snr_db is not None and not metrics.snr_db >= tolerance.min_snr_db:
        problems.append(f"{name}: SNR {metrics.snr_db:.1f} dB < {tolerance.min_snr_db} dB")
    if tolerance.max_abs_error is not None and not metrics.max_abs_error <= tolerance.max_abs_error:
        problems.append(f"{name}: max abs error {metrics.max_abs_error:.3g} > {tolerance.max_abs_error}")
    for label, agreement, interval, gate in (
        ("top-1", metrics.top1_agreement, metrics.top1_interval, tolerance.min_top1_agreement),
        ("top-5", metrics.top5_agreement, metrics.top5_interval, tolerance.min_top5_agreement),
    ):
        if gate is None or agreement is None or interval is None or interval[1] >= gate:
            continue
        problems.append(
            f"{name}: {label} agreement {agreement:.1%} < {gate:.1%} (95% interval {interval[0]:.1%}-"
            f"{interval[1]:.1%} over {metrics.rows} samples)"
        )
    return problems


def _not_applicable(metrics: OutputMetrics, tolerance: Precision) -> list[str]:
    """The agreement gates set for an output they cannot measure, and the ties they counted as agreeing."""
    notes = []
    shape = list(metrics.shape)
    if metrics.top1_ties:
        notes.append(
            f"{metrics.name}: on {metrics.top1_ties} of {metrics.rows} samples the artifact scores the reference's "
            "top class level with its own top one (its output resolution cannot separate them); top-1 counts them "
            "as agreeing"
        )
    if tolerance.min_top1_agreement is not None and metrics.top1_agreement is None:
        notes.append(f"{metrics.name}: the top-1 gate does not apply (per-sample shape {shape} is not [C] or [1, C])")
    if tolerance.min_top5_agreement is not None and metrics.top5_agreement is None:
        notes.append(
            f"{metrics.name}: the top-5 gate does not apply (per-sample shape {shape} is not [C] or [1, C] with "
            "more than 5 classes)"
        )
    return notes


def compare(
    reference: Sequence[Feeds],
    candidate: Sequence[Feeds],
    tolerance: Precision,
    output_permutations: Mapping[str, tuple[int, ...]] | None = None,
) -> AccuracyResult:
    """Compare every sample of every reference output with the candidate's; collect every failure."""
    failures: list[str] = []
    notes: list[str] = []
    if not reference:
        return AccuracyResult(
            passed=False, samples=0, tolerance=tolerance, outputs=(), failures=("no samples were compared",)
        )
    if not reference[0]:
        return AccuracyResult(
            passed=False,
            samples=len(reference),
            tolerance=tolerance,
            outputs=(),
            failures=("the reference has no outputs to compare",),
        )
    if len(candidate) != len(reference):
        failures.append(f"runtime returned {len(candidate)} results for {len(reference)} samples")
        return AccuracyResult(
            passed=False, samples=len(reference), tolerance=tolerance, outputs=(), failures=tuple(failures)
        )
    names = list(reference[0]) if reference else []
    metrics = []
    spreads: dict[str, tuple[float, float]] = {}
    other_outputs = False  # strings/bools compared for equality: not measured for sensitivity, assumed to vary
    for name in names:
        if any(name not in outputs for outputs in candidate):
            present = ", ".join(sorted(candidate[0])) if candidate else "(none)"
            failures.append(f"{name}: missing from the artifact's outputs (it has: {present})")
            continue
        permutation = (output_permutations or {}).get(name)
        rank = np.ndim(reference[0][name])
        if permutation is not None and sorted(permutation) != list(range(rank)):
            failures.append(
                f"{name}: the artifact claims its layout is the reference's permuted by {list(permutation)}, "
                f"which is no permutation of a rank-{rank} output; the converter's output_permutations are wrong"
            )
            continue
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
        if stacked.size == 0:  # every sample's output is empty: nothing was compared, and nothing can pass
            failures.append(
                f"{name}: no values compared (per-sample shape {list(stacked.shape[1:])} holds none); a check on "
                "zero elements cannot pass: feed inputs whose every dimension is 1 or more"
            )
            continue
        if not np.issubdtype(stacked.dtype, np.number) and stacked.dtype != np.bool_:
            other_outputs = True
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
        stacked_refs = np.stack(refs)
        if np.any(ref_non_finite):
            same = np.isnan(stacked_refs) & np.isnan(stacked) | (stacked_refs == stacked)
            moved = int(np.sum(ref_non_finite & ~same))
            if moved:
                failures.append(f"{name}: {moved} values differ where the reference is NaN/Inf")
                continue
            notes.append(
                f"{name}: {int(np.sum(ref_non_finite))} of {ref_non_finite.size} reference values are NaN/Inf; the "
                "artifact has the same ones, and the metrics are over the finite values"
            )
            stacked_refs = np.where(ref_non_finite, 0, stacked_refs)
            stacked = np.where(ref_non_finite, 0, stacked)
        spreads[name] = spread = reference_spread(stacked_refs)
        result = dataclasses.replace(measure(name, stacked_refs, stacked), reference_spread=_relative(*spread))
        metrics.append(result)
        failures.extend(_gate(result, tolerance))
        notes.extend(_not_applicable(result, tolerance))
    inconclusive, flat_notes = "", []
    if not failures:
        inconclusive, flat_notes = _sensitivity(metrics, spreads, len(reference))
        if other_outputs and inconclusive:  # a non-numeric output compared: the flat ones are a note only
            inconclusive, flat_notes = "", [inconclusive]
    return AccuracyResult(
        passed=not failures,
        samples=len(reference),
        tolerance=tolerance,
        outputs=tuple(metrics),
        failures=tuple(failures),
        notes=(*notes, *flat_notes, *([inconclusive] if inconclusive else [])),
        inconclusive=inconclusive,
    )
