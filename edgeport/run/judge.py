"""What happens to a converted target before its benchmark: it is checked; when the check fails (or with
--layers) its layers are compared with the SavedModel's; and when a quantized target failed with
`-O quant_fallback=auto`, refits keep layers in float until a candidate passes, which replaces the artifact.
No benchmark here: those run when nothing else does (run/bench)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.data import Artifact
from edgeport.report.files import StageResult
from edgeport.run import quant_fallback
from edgeport.run.check import Checked, check_artifact
from edgeport.run.output_folder import artifact_files
from edgeport.run.plan import Progress, TargetPlan
from edgeport.run.reference import Reference
from edgeport.run.refit import LayerSource, Refits
from edgeport.run.request import RunRequest


@dataclass(frozen=True)
class Judged:
    """A target after its check (and per-layer comparison, and quant_fallback): what its benchmark and its
    TargetResult start from. `all_quantized`: the folder the all-quantized artifact was moved to when
    quant_fallback replaced it, benchmarked for the cost, then removed, and its size in bytes."""

    plan: TargetPlan
    convert: StageResult
    artifact: Artifact | None
    checked: Checked | None = None
    layers: dict[str, Any] | None = None
    fallback: quant_fallback.FallbackOutcome | None = None
    all_quantized: tuple[Path, int] | None = None


def judge(
    request: RunRequest,
    plan: TargetPlan,
    artifact: Artifact | None,
    convert: StageResult,
    references: tuple[Reference, ...],
    logs: Path,
    progress: Progress,
    layer_source: LayerSource,
    refits: Refits,
) -> Judged:
    if artifact is None:
        return Judged(plan, convert, None)
    folder = request.out / plan.slug
    main = folder / artifact.main_file
    checked = check_artifact(request, plan, artifact, main, references, logs, progress)
    layers = None
    if request.check and (request.layers or checked.accuracy_failed) and checked.sizes:
        layers = layer_source.compare(plan, artifact, main, progress)
    judged = Judged(plan, convert, artifact, checked, layers)
    if not (checked.accuracy_failed and layers is not None and refits.wanted(plan)):
        return judged
    fallback, chosen = refits.run(plan, layers, references, progress)
    if chosen is None:
        return Judged(plan, convert, artifact, checked, layers, fallback)
    size = sum(p.stat().st_size for p in artifact_files(folder))
    kept, candidate = refits.install(plan, chosen)
    return Judged(plan, convert, candidate.artifact, candidate.checked, layers, fallback, (kept, size))
