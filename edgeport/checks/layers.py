"""Per-layer comparison: where the accuracy went.

The reference is every layer output of the shared frozen graph (model/intermediates) on a few check samples
(LAYER_SAMPLES); the artifact's are the same tensors on the real runtime (`Runtime.intermediates`). Tensors
are matched by the TensorFlow names each format keeps (`match_names`: TFLite's fused names `a;b`, tf2onnx's
`name:0`, suffixes added to keep names unique), quantized values are dequantized by the runtime, NCHW is
undone here by shape, and each matched layer gets the shared metrics (checks/accuracy.measure).

Attribution: a layer's error is its relative RMS error r = ||artifact - reference|| / ||reference||
(10^(-SNR/20)); the error it *added* is r at its output minus the largest r at its inputs (its nearest layer
ancestors; a model input has r = 0; a layer the converter fused away passes its inputs' r on). A layer
diverges when its cosine is below the target's `min_cosine`; the first divergent layer is the first, in
depth order, that diverges and added at least half of its own error (the cause, not a victim downstream of
it); when none did, the divergent layer that added the most.
"""

from __future__ import annotations

import re
from collections.abc import Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgeport.checks.accuracy import measure

LAYER_SAMPLES = 4  # samples the per-layer comparison runs on: a few are enough to locate error
WORST = 5  # layers listed as the worst (by added error)
WRAPPERS = ("StatefulPartitionedCall/", "PartitionedCall/")  # prefixes converters add from the signature call
DEFAULT_MIN_COSINE = 0.99


@dataclass(frozen=True)
class LayerRun:
    """What a runtime hands back: per sample, TF layer name -> the artifact's value (dequantized, in the
    artifact's layout), and which artifact tensor each came from."""

    values: list[dict[str, np.ndarray]]
    artifact_names: dict[str, str] = field(default_factory=dict)  # TF layer name -> artifact tensor name
    graph_id: str = "main"  # the artifact's graph, for the Model Explorer node data
    notes: tuple[str, ...] = ()
    # TF layer name -> the id Model Explorer gives the artifact node producing it, for formats whose Model
    # Explorer adapter names no output `tensor_name` (ONNX: the node's name); empty: keyed by tensor name
    node_ids: dict[str, str] = field(default_factory=dict)


def name_candidates(artifact_name: str) -> list[str]:
    """TF node names an artifact tensor name may stand for, most specific first."""
    found: list[str] = []
    for part in artifact_name.split(";"):
        part = re.sub(r"(:\d+)?(_QuantizeLinear_Output|_DequantizeLinear_Output|_quantized)?$", "", part.strip())
        variants = [part]
        stripped = part
        while True:
            for wrapper in WRAPPERS:
                if stripped.startswith(wrapper):
                    stripped = stripped[len(wrapper) :]
                    variants.append(stripped)
                    break
            else:
                break
        for variant in list(variants):
            trimmed = re.sub(r"\d+$", "", variant)
            if trimmed != variant and trimmed:
                variants.append(trimmed)
        found.extend(v for v in variants if v not in found)
    return found


def stands_for(artifact_name: str, known: Container[str]) -> list[str]:
    """The TF nodes (of `known`) an artifact tensor stands for: per fused part (`a;b`), its most specific
    candidate that is a node (so `dense1` stands for the layer `dense1` when there is one, else for `dense`
    with a uniquifying suffix)."""
    found: list[str] = []
    for part in artifact_name.split(";"):
        hit = next((c for c in name_candidates(part) if c in known), None)
        if hit is not None and hit not in found:
            found.append(hit)
    return found


def match_names(artifact_names: Iterable[str], layers: Sequence[str]) -> dict[str, str]:
    """{artifact tensor name: TF layer name}: of the layers a (fused) tensor names, the deepest; each TF layer
    is claimed by the first artifact tensor naming it (in the artifact's execution order)."""
    depth = {name: index for index, name in enumerate(layers)}
    matched: dict[str, str] = {}
    claimed: set[str] = set()
    for artifact_name in artifact_names:
        hits = [c for c in name_candidates(artifact_name) if c in depth and c not in claimed]
        if hits:
            best = max(hits, key=depth.__getitem__)
            matched[artifact_name] = best
            claimed.add(best)
    return matched


def undo_layout(artifact: np.ndarray, reference: np.ndarray) -> np.ndarray | None:
    """The artifact's tensor in the reference's layout: as is, NCHW -> NHWC, or None when it does not fit."""
    if artifact.shape == reference.shape:
        return artifact
    if artifact.ndim == 4 and artifact.shape == tuple(reference.shape[i] for i in (0, 3, 1, 2)):
        return np.transpose(artifact, (0, 2, 3, 1))
    if artifact.ndim == 3 and artifact.shape == tuple(reference.shape[i] for i in (0, 2, 1)):
        return np.transpose(artifact, (0, 2, 1))
    if artifact.size == reference.size and artifact.squeeze().shape == reference.squeeze().shape:
        return artifact.reshape(reference.shape)
    return None


@dataclass(frozen=True)
class LayerReport:
    first_divergent: str | None
    first_divergent_op: str | None
    worst: tuple[str, ...]
    tensors: tuple[dict[str, Any], ...]
    fused_away: tuple[str, ...]
    samples: int
    min_cosine: float
    notes: tuple[str, ...] = ()
    node_data: dict[str, Any] = field(default_factory=dict)  # Model Explorer node data (model_explorer_data)

    def to_dict(self) -> dict[str, Any]:
        return {
            "first_divergent": self.first_divergent,
            "first_divergent_op": self.first_divergent_op,
            "worst": list(self.worst),
            "tensors": list(self.tensors),
            "fused_away": list(self.fused_away),
            "samples": self.samples,
            "min_cosine": self.min_cosine,
            "notes": list(self.notes),
        }


def relative_error(snr_db: float) -> float:
    if snr_db == float("inf"):
        return 0.0
    if snr_db == float("-inf") or not np.isfinite(snr_db):
        return float("inf")
    return float(10.0 ** (-snr_db / 20.0))


def compare_layers(reference, run: LayerRun, min_cosine: float | None = None) -> LayerReport:
    """Compare the runtime's layers with the reference's (a model/intermediates.LayerReference) and attribute
    the error to the layers that added it."""
    gate = DEFAULT_MIN_COSINE if min_cosine is None else float(min_cosine)
    count = min(len(reference.values), len(run.values))
    notes = [*reference.notes, *run.notes]
    tensors: list[dict[str, Any]] = []
    fused: list[str] = []
    error: dict[str, float] = {"": 0.0}  # relative RMS error per layer (inherited through fused layers)
    for layer in reference.layers:
        inherited = max((error.get(source, 0.0) for source in layer.inputs), default=0.0)
        present = count > 0 and all(layer.name in run.values[i] for i in range(count))
        if not present:
            fused.append(layer.name)
            error[layer.name] = inherited
            continue
        refs = [np.asarray(reference.values[i][layer.name]) for i in range(count)]
        cands = [undo_layout(np.asarray(run.values[i][layer.name]), refs[i]) for i in range(count)]
        if any(c is None for c in cands):
            shape = list(np.shape(run.values[0][layer.name]))
            notes.append(f"{layer.name}: artifact shape {shape} does not fit the reference's {list(refs[0].shape)}")
            fused.append(layer.name)
            error[layer.name] = inherited
            continue
        metrics = measure(layer.name, np.stack(refs), np.stack([c for c in cands if c is not None]))
        own = relative_error(metrics.snr_db)
        error[layer.name] = own
        added = own - inherited if np.isfinite(own) else float("inf")
        tensors.append(
            {
                "name": layer.name,
                "op": layer.op,
                "shape": list(refs[0].shape),
                "depth": layer.depth,
                "artifact_tensor": run.artifact_names.get(layer.name, layer.name),
                "cosine": metrics.cosine,
                "snr_db": metrics.snr_db,
                "max_abs_error": metrics.max_abs_error,
                "relative_error": own,
                "added_error": max(0.0, added),
                "divergent": not metrics.cosine >= gate,
            }
        )
    first = _first_divergent(tensors)
    worst = sorted((t for t in tensors if t["added_error"] > 0), key=lambda t: -t["added_error"])[:WORST]
    if count == 0:
        notes.append("no samples compared")
    return LayerReport(
        first_divergent=first["name"] if first else None,
        first_divergent_op=first["op"] if first else None,
        worst=tuple(t["name"] for t in worst),
        tensors=tuple(tensors),
        fused_away=tuple(fused),
        samples=count,
        min_cosine=gate,
        notes=tuple(notes),
        node_data=model_explorer_data(tensors, run.graph_id, run.node_ids),
    )


def _first_divergent(tensors: list[dict[str, Any]]) -> dict[str, Any] | None:
    divergent = [t for t in tensors if t["divergent"]]
    if not divergent:
        return None
    for tensor in divergent:
        own = tensor["relative_error"]
        if not np.isfinite(own) or tensor["added_error"] >= 0.5 * own:
            return tensor
    return max(divergent, key=lambda t: t["added_error"])


def model_explorer_data(
    tensors: Sequence[Mapping[str, Any]], graph_id: str, node_ids: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Node data for Google's Model Explorer: the error each node added, white for none, red for the most.

    The format is what `model_explorer.node_data_builder` (ai-edge-model-explorer 0.1.34) writes for a
    `ModelNodeData`: {graph id: GraphNodeData}, a GraphNodeData being {"results": {key: NodeDataResult},
    "gradient": [GradientItem]} (optional "name", "thresholds", "hide*"/"show*" flags), a NodeDataResult
    {"value": number} (optional "bgColor", "textColor"), a GradientItem {"stop": 0..1, "bgColor"}, stops 0 and
    1 always given. The web app colours only the graph whose id is the key, and resolves a result key through
    the nodes' output `tensor_name`s first, else as a node id. The TFLite adapter gives each output its
    flatbuffer tensor name, so a .tflite's results are keyed by the artifact tensor; the ONNX adapter
    (model-explorer-onnx) tags outputs `__tensor_tag` instead, so an ONNX model's are keyed by the producing
    node's name (`node_ids`). A non-finite added error is written as 1e9 (JSON has no Infinity or NaN):
    that node is the red one.
    """
    ids = node_ids or {}
    results = {}
    for tensor in tensors:
        value = float(tensor["added_error"])
        key = ids.get(str(tensor["name"])) or str(tensor["artifact_tensor"])
        results[key] = {"value": value if np.isfinite(value) else 1e9}
    return {
        graph_id: {
            "results": results,
            "gradient": [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 1, "bgColor": "#d62728"}],
        }
    }
