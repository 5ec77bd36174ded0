"""Task accuracy against labels (`--labels`): top-1/top-5 of the SavedModel and of each artifact, same samples.

Agreement with the SavedModel (checks/accuracy) says whether an artifact behaves like the model; task accuracy
says what a user gates on: how often it is right. Labels are class indices, one per class-score row of the
scored output: `.npy` of ints, `FILE.npz:KEY`, `FILE.npz` (key `labels`), or a bare `KEY` of the `--data`
`.npz` (that key is then not an input). The gate `max_accuracy_drop` (per target, absolute: 0.01 = one point)
fails the check when the artifact's top-1 accuracy is below the SavedModel's by more than that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeport.data import Feeds
from edgeport.errors import UsageError
from edgeport.report import wording

DEFAULT_KEY = "labels"


@dataclass(frozen=True)
class LabelsSpec:
    """Where the labels are: a file (.npy or .npz) and, for an .npz, its key."""

    path: Path
    key: str | None = None  # None: an .npy (or the DEFAULT_KEY of an .npz)

    def describe(self) -> str:
        return f"{self.path}:{self.key}" if self.key else str(self.path)


def parse_labels_spec(text: str, base: Path | None = None, data: Path | None = None) -> LabelsSpec:
    """`FILE.npy`, `FILE.npz[:KEY]` or a bare `KEY` of the `--data` .npz; relative paths against `base`."""
    text = text.strip()
    name, key = text, ""
    if ".npz:" in text:
        name, _, key = text.rpartition(":")
    path = Path(name).expanduser()
    if base is not None and not path.is_absolute():
        path = base / path
    if text and not path.suffix and not path.exists():  # a bare key of the --data .npz
        if data is None or data.suffix != ".npz":
            raise UsageError(f"--labels {text}: a bare key names labels in the --data .npz, and there is none")
        return LabelsSpec(Path(data), text)
    if path.suffix == ".npz":
        return LabelsSpec(path, key or DEFAULT_KEY)
    if path.suffix != ".npy":
        raise UsageError(f"--labels {text!r}: use FILE.npy (class indices), FILE.npz:KEY or a KEY of the --data .npz")
    return LabelsSpec(path)


@dataclass(frozen=True)
class LabelSet:
    values: np.ndarray  # int64, one label per class-score row, in sample order
    source: str

    @property
    def count(self) -> int:
        return int(self.values.size)


def load_labels(spec: LabelsSpec, samples: int) -> LabelSet:
    """Read and validate the labels: integers, one per sample (or per row of a batched feed)."""
    from edgeport.model.samples import read_npz

    if not spec.path.is_file():
        raise UsageError(f"--labels {spec.describe()}: {spec.path} does not exist")
    if spec.path.suffix == ".npz":
        archive = read_npz(spec.path)
        if spec.key not in archive:
            raise UsageError(
                f"--labels {spec.describe()}: {spec.path} has no key {spec.key!r} (keys: {', '.join(sorted(archive))})"
            )
        array = np.asarray(archive[spec.key])
    else:
        try:
            array = np.load(spec.path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise UsageError(f"--labels {spec.describe()}: not a numpy array ({exc}); write it with np.save") from None
    if array.dtype.kind not in "iub" and not (
        array.dtype.kind == "f" and array.size and np.all(np.isfinite(array)) and np.all(array == np.round(array))
    ):
        raise UsageError(f"--labels {spec.describe()}: {array.dtype} values; labels are class indices (integers)")
    if array.ndim == 0 or len(array) != samples:
        length = "a scalar" if array.ndim == 0 else f"{len(array)} labels"
        raise UsageError(f"--labels {spec.describe()}: {length} for {samples} samples; give one label per sample")
    values = array.astype(np.int64).reshape(-1)
    if values.size and values.min() < 0:
        raise UsageError(f"--labels {spec.describe()}: negative label {int(values.min())}; labels are class indices")
    return LabelSet(values=values, source=spec.describe())


@dataclass(frozen=True)
class TaskAccuracy:
    """report.json `accuracy.task`: `metric`, `reference` (the SavedModel), `artifact`, `drop` (reference minus
    artifact)."""

    metric: str  # "top1"
    output: str  # the scored output
    samples: int  # labelled rows scored
    reference: float
    artifact: float
    drop: float
    reference_top5: float | None = None
    artifact_top5: float | None = None
    max_drop: float | None = None  # the gate max_accuracy_drop, when set
    passed: bool = True
    failure: str = ""


def _rows(outputs: Sequence[Feeds], name: str) -> np.ndarray:
    stacked = np.stack([np.asarray(o[name]) for o in outputs]).astype(np.float64)
    return stacked.reshape(-1, stacked.shape[-1])


def scored_output(reference: Sequence[Feeds], labels: LabelSet) -> str:
    """The output labels score: the first numeric output with one class-score row per label."""
    candidates = []
    for name in reference[0]:
        value = np.asarray(reference[0][name])
        if value.ndim == 0 or not np.issubdtype(value.dtype, np.number) or value.shape[-1] < 2:
            continue
        candidates.append(name)
        if len(reference) * (value.size // value.shape[-1]) == labels.count:
            _check_classes(labels, name, value.shape[-1])
            return name
    shapes = ", ".join(f"{n} {list(np.shape(reference[0][n]))}" for n in reference[0])
    if not candidates:
        raise UsageError(f"--labels: no output holds class scores ([..., C], C > 1); outputs: {shapes}")
    raise UsageError(
        f"--labels: {labels.count} labels do not fit any output's rows of class scores ({shapes}, per sample); "
        "give one label per class-score row"
    )


def _check_classes(labels: LabelSet, output: str, classes: int) -> None:
    """Every label must name a class of the scored output: one at or above its class count would be scored as a
    miss on every target, silently."""
    outside = np.flatnonzero(labels.values >= classes)
    if outside.size:
        first = int(outside[0])
        raise UsageError(
            f"--labels {labels.source}: label {int(labels.values[first])} (row {first}) is not a class of output "
            f"{output!r}, which scores {classes} classes (0..{classes - 1}); {outside.size} of {labels.count} "
            "labels are out of range: are these the labels of this model?"
        )


def topk_accuracy(rows: np.ndarray, labels: np.ndarray, k: int) -> float | None:
    if rows.shape[-1] <= k and k > 1:
        return None
    top = np.argsort(-rows, axis=-1, kind="stable")[:, :k]
    return float(np.mean(np.any(top == labels[:, None], axis=-1))) if len(labels) else 0.0


def task_accuracy(
    reference: Sequence[Feeds],
    candidate: Sequence[Feeds],
    labels: LabelSet,
    max_drop: float | None = None,
    output: str | None = None,
) -> TaskAccuracy:
    name = output or scored_output(reference, labels)
    ref_rows, cand_rows = _rows(reference, name), _rows(candidate, name)
    if cand_rows.shape != ref_rows.shape:
        raise ValueError(f"{name}: artifact rows {cand_rows.shape} != reference {ref_rows.shape}")
    reference_top1 = topk_accuracy(ref_rows, labels.values, 1) or 0.0
    artifact_top1 = topk_accuracy(cand_rows, labels.values, 1) or 0.0
    drop = reference_top1 - artifact_top1
    passed = max_drop is None or drop <= max_drop + 1e-12
    failure = (
        ""
        if passed
        else f"task top-1 accuracy {wording.percent(artifact_top1, 2)} vs SavedModel "
        f"{wording.percent(reference_top1, 2)} on {len(labels.values)} labelled samples: "
        f"drop {wording.points(drop)} > max_accuracy_drop {max_drop:g} ({wording.points(max_drop)})"
    )
    return TaskAccuracy(
        metric="top1",
        output=name,
        samples=len(labels.values),
        reference=reference_top1,
        artifact=artifact_top1,
        drop=drop,
        reference_top5=topk_accuracy(ref_rows, labels.values, 5),
        artifact_top5=topk_accuracy(cand_rows, labels.values, 5),
        max_drop=max_drop,
        passed=passed,
        failure=failure,
    )
