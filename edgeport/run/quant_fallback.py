"""Accuracy-controlled quantization (`-O quant_fallback=auto`): a quantized target that fails its gates is
converted again with the layers adding the most error kept in float, until the gates pass or MAX_ROUNDS.

The choice, round by round, reads the latest artifact's per-layer comparison (checks/layers): the layer that
added the most error goes to float. When that layer is already float, the error reaches it through its
quantized inputs (a float op still reads the int8 tensor its producer wrote), so its nearest quantized
producers go instead. Each round converts, checks and compares layers again on the real runtime; the report
says which layers stayed float, every round's verdict, and the cost in size and p50 against the all-quantized
artifact. A converter that cannot keep layers in float for the variant (`Converter.float_fallback`) gets a
clear "cannot meet the gate" with the layers that add the error.

The pipeline owns the conversions, checks and benchmarks (run/pipeline); this module owns the choice and the
record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgeport.report import wording

MAX_ROUNDS = 6  # conversions tried after the all-quantized one; each keeps one layer (or its producers) more


@dataclass(frozen=True)
class Trial:
    """One artifact the loop tried: the layers it kept in float, its check's verdict, its layer comparison."""

    float_layers: tuple[str, ...]
    passed: bool
    failure: str = ""  # the check's reason when it failed
    layers: Mapping[str, Any] | None = None  # its per-layer comparison (None when it passed)
    converted: bool = True  # False: the conversion itself failed (failure says why)
    payload: Any = None  # the pipeline's own record of the trial (artifact, staging folder, check results)

    def describe(self) -> dict[str, Any]:
        return {
            "float_layers": list(self.float_layers),
            "verdict": "passed" if self.passed else ("failed" if self.converted else "error"),
            "reason": self.failure,
        }


@dataclass(frozen=True)
class FallbackOutcome:
    status: str  # passed | failed | unavailable
    reason: str
    trials: tuple[Trial, ...] = ()
    chosen: Trial | None = None  # the trial that passed
    cost: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "float_layers": list(self.chosen.float_layers) if self.chosen else [],
            "rounds": [trial.describe() for trial in self.trials],
            "cost": dict(self.cost),
        }


def next_float_layers(
    layers: Mapping[str, Any], kept: Sequence[str], layer_inputs: Mapping[str, Sequence[str]]
) -> tuple[str, ...]:
    """The layers the next round adds to `kept`: the compared layer that added the most error and is not yet
    float; when a float layer adds more, its nearest quantized producers (through layers with no tensor of
    their own). Empty: nothing left to try."""
    tensors = sorted(
        (t for t in layers.get("tensors", []) if float(t.get("added_error", 0.0)) > 0.0),
        key=lambda t: -float(t["added_error"]),
    )
    compared = {t["name"] for t in layers.get("tensors", [])}
    held = set(kept)
    for tensor in tensors:
        name = tensor["name"]
        if name not in held:
            return (name,)
        producers = _quantized_producers(name, held, compared, layer_inputs)
        if producers:
            return producers
    return ()


def _quantized_producers(
    name: str, held: set[str], compared: set[str], layer_inputs: Mapping[str, Sequence[str]]
) -> tuple[str, ...]:
    found: list[str] = []
    seen = {name}
    frontier = list(layer_inputs.get(name, ()))
    while frontier:
        source = frontier.pop(0)
        if not source or source in seen:  # "" is a model input
            continue
        seen.add(source)
        if source in compared and source not in held:
            found.append(source)
        elif source not in compared or source in held:  # fused away, or float already: look past it
            frontier.extend(layer_inputs.get(source, ()))
    return tuple(found)


def keep_layers_in_float(
    first: Mapping[str, Any],
    layer_inputs: Mapping[str, Sequence[str]],
    attempt: Callable[[tuple[str, ...]], Trial],
    max_rounds: int = MAX_ROUNDS,
) -> FallbackOutcome:
    """Greedy rounds from the all-quantized artifact's comparison `first`; `attempt(float_layers)` converts,
    checks and compares one candidate on the real runtime."""
    kept: tuple[str, ...] = ()
    layers = first
    trials: list[Trial] = []
    for _ in range(max_rounds):
        if layers.get("error"):
            why = f"no per-layer comparison to choose from: {layers['error']}"
            return FallbackOutcome("failed", why, tuple(trials))
        more = next_float_layers(layers, kept, layer_inputs)
        if not more:
            break
        kept = (*kept, *more)
        trial = attempt(kept)
        trials.append(trial)
        if trial.passed:
            said = ", ".join(kept)
            return FallbackOutcome("passed", f"passes with {len(kept)} layer(s) in float: {said}", tuple(trials), trial)
        if not trial.converted or trial.layers is None:
            return FallbackOutcome("failed", f"stopped: {trial.failure}", tuple(trials))
        layers = trial.layers
    tried = ", ".join(kept) or "none"
    return FallbackOutcome(
        "failed",
        f"cannot meet the gates with {len(kept)} layer(s) in float after {len(trials)} round(s) (kept: {tried}); "
        "the artifact kept is the all-quantized one",
        tuple(trials),
    )


def unavailable(reason: str, layers: Mapping[str, Any] | None) -> FallbackOutcome:
    """The converter cannot keep layers in float here: "cannot meet the gate", naming where the error enters."""
    worst = list((layers or {}).get("worst", []))[:3]
    where = f"; the error enters at {', '.join(worst)}" if worst else ""
    return FallbackOutcome("unavailable", f"cannot meet the gate: {reason}{where}")


def cost(
    all_size: int, size: int, all_p50: float | None, p50: float | None, why_no_latency: str = ""
) -> dict[str, Any]:
    """What keeping layers in float costs against the all-quantized artifact: bytes and p50."""
    data: dict[str, Any] = {
        "all_quantized_size_bytes": all_size,
        "size_bytes": size,
        "size_ratio": round(size / all_size, 4) if all_size else None,
    }
    if all_p50 is not None and p50 is not None:
        data.update(all_quantized_p50_ms=round(all_p50, 4), p50_ms=round(p50, 4), p50_ratio=round(p50 / all_p50, 4))
    else:
        data["latency"] = why_no_latency or "not measured"
    return data


def cost_text(data: Mapping[str, Any]) -> str:
    before, after = data["all_quantized_size_bytes"], data["size_bytes"]
    size = f"size {wording.size(before)} -> {wording.size(after)} ({wording.times(after, before)})"
    if "p50_ms" in data:
        p50, all_p50 = data["p50_ms"], data["all_quantized_p50_ms"]
        return (
            f"{size}, p50 {wording.latency_ms(all_p50)} -> {wording.latency_ms(p50)} "
            f"({wording.ratio(p50, all_p50, than='all-quantized')})"
        )
    return f"{size}; latency cost {data.get('latency', 'not measured')}"
