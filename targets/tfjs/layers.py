"""The per-layer comparison on TF.js (Node and browser): which graph nodes to fetch, and what came back.

A TF.js graph model executes to any named node (`executeAsync(feeds, [node, ...])`), so the layers are the
model.json nodes (`modelTopology.node[].name`: edgeport's emitter keeps the TF names, a fused op takes its last
node's) matched to the TF layers with `checks.layers.match_names`, plus the signature outputs standing for a
layer (`aliases`). Not requested: constants, placeholders and control-flow ops, the nodes inside a v1 cond
branch or loop frame (computed per branch or iteration, not once per run), and nodes declaring a non-float
dtype. The runner or page (protocol.js `fetchLayers`) fetches them BATCH_NODES at a time, every sample per
batch, downloading a batch's tensors and disposing of them before the next, so at most one batch's outputs
live in the backend's memory; it stops after the batch that takes the downloaded bytes past MAX_BYTES (what
a page hands back through Playwright's JSON, as base64, with room to spare), and the layers past it are noted,
not compared. Values are float32 already: TF.js quantizes weights only (uint8/float16), activations stay float.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.checks.layers import LayerRun, match_names
from edgeport.contracts import Feeds
from edgeport.targets.tfjs.wire import read_model_json

BATCH_NODES = 32  # node outputs requested by one executeAsync call
MAX_BYTES = 128 << 20  # downloaded layer values (all samples) after which no further batch is fetched
NOT_REQUESTED_OPS = frozenset(
    {
        "Const",
        "Placeholder",
        "PlaceholderWithDefault",
        "NoOp",
        "ControlTrigger",
        "Enter",
        "RefEnter",
        "Exit",
        "RefExit",
        "Merge",
        "RefMerge",
        "Switch",
        "RefSwitch",
        "NextIteration",
        "RefNextIteration",
        "LoopCond",
    }
)
FLOAT_TYPES = frozenset({"DT_FLOAT", "DT_HALF", "DT_BFLOAT16", "DT_DOUBLE"})
DTYPE_ATTRS = ("DstT", "out_type", "output_type", "T", "dtype")  # the first present says the output's dtype
# Where a v1 control-flow region opens, and the ops that close it.
REGION_CLOSERS = {
    "Switch": frozenset({"Merge", "RefMerge", "Exit", "RefExit"}),
    "RefSwitch": frozenset({"Merge", "RefMerge", "Exit", "RefExit"}),
    "Enter": frozenset({"Exit", "RefExit"}),
    "RefEnter": frozenset({"Exit", "RefExit"}),
}
NOTE_EXAMPLES = 3


@dataclass(frozen=True)
class LayerPlan:
    """The TF.js tensors to fetch (node names, or a signature output's tensor name), in the model's node order,
    each with the TF layer it stands for."""

    layers: dict[str, str]  # TF.js node or tensor name -> TF layer name

    def request(self) -> dict[str, Any]:
        """The runner's or page's `layers` request: the names in batches, and the byte cap."""
        names = list(self.layers)
        batches = [names[i : i + BATCH_NODES] for i in range(0, len(names), BATCH_NODES)]
        return {"batches": batches, "max_bytes": MAX_BYTES}

    def layer_run(self, values: Sequence[Feeds], report: Mapping[str, Any]) -> LayerRun:
        """The LayerRun from what the runner or page fetched (`report`: its `layers` answer: how many names it
        got to, and the ones it dropped with why)."""
        samples = [
            {layer: np.asarray(sample[name], dtype=np.float32) for name, layer in self.layers.items() if name in sample}
            for sample in values
        ]
        return LayerRun(
            values=samples,
            artifact_names={layer: name for name, layer in self.layers.items()},
            graph_id="main",
            notes=self._notes(report),
        )

    def _notes(self, report: Mapping[str, Any]) -> tuple[str, ...]:
        notes = []
        fetched = int(report.get("fetched", len(self.layers)))
        if fetched < len(self.layers):
            notes.append(
                f"{len(self.layers) - fetched} of {len(self.layers)} TF.js layer tensors not fetched: the values "
                f"fetched before them reached {MAX_BYTES >> 20} MB"
            )
        dropped = dict(report.get("dropped") or {})
        if dropped:
            examples = "; ".join(f"{name}: {why}" for name, why in list(dropped.items())[:NOTE_EXAMPLES])
            more = f" (and {len(dropped) - NOTE_EXAMPLES} more)" if len(dropped) > NOTE_EXAMPLES else ""
            notes.append(f"{len(dropped)} TF.js layer tensors dropped: {examples}{more}")
        return tuple(notes)


def plan_layers(model_json: Path, names: Sequence[str], aliases: Mapping[str, str]) -> LayerPlan:
    """The model.json nodes standing for the TF layers `names` (in depth order), and the signature outputs
    computing a layer no node matched (`aliases`: signature output -> layer)."""
    document = read_model_json(model_json)
    nodes = [node for node in (document.get("modelTopology") or {}).get("node") or [] if isinstance(node, dict)]
    matched = match_names(requestable(nodes), names)
    outputs = (document.get("signature") or {}).get("outputs") or {}
    for output, layer in aliases.items():
        tensor = (outputs.get(output) or {}).get("name")
        if tensor and layer not in matched.values():
            matched[tensor] = layer
    return LayerPlan(layers=matched)


def requestable(nodes: Sequence[Mapping[str, Any]]) -> list[str]:
    """Names of the nodes whose output can be fetched once per run: no constant, placeholder or control-flow
    op, nothing inside a cond branch or loop frame, no declared non-float output."""
    inside = control_flow_region(nodes)
    return [
        str(node["name"])
        for node in nodes
        if "name" in node
        and node.get("op") not in NOT_REQUESTED_OPS
        and node["name"] not in inside
        and _declares_float(node)
    ]


def control_flow_region(nodes: Sequence[Mapping[str, Any]]) -> set[str]:
    """Nodes reachable from a v1 Switch before a Merge or Exit, or from an Enter before an Exit: their values
    exist per branch taken or per loop iteration, and executeAsync cannot hand them back (best effort: a
    nested region closed early lets a few through; protocol.js drops what TF.js cannot compute)."""
    consumers: dict[str, list[Mapping[str, Any]]] = {}
    for node in nodes:
        for source in node.get("input") or []:
            consumers.setdefault(_node_name(source), []).append(node)
    inside: set[str] = set()
    for opener in nodes:
        closers = REGION_CLOSERS.get(str(opener.get("op")))
        if closers is not None:
            inside |= _reachable(str(opener.get("name")), consumers, closers)
    return inside


def _reachable(start: str, consumers: Mapping[str, list[Mapping[str, Any]]], closers: frozenset[str]) -> set[str]:
    seen: set[str] = set()
    stack = [start]
    while stack:
        for consumer in consumers.get(stack.pop(), ()):
            name = str(consumer.get("name"))
            if consumer.get("op") not in closers and name not in seen:
                seen.add(name)
                stack.append(name)
    return seen


def _declares_float(node: Mapping[str, Any]) -> bool:
    """The node's output dtype, as its first dtype attribute declares it, is a float (none declared: kept, the
    runner drops a non-float output it gets)."""
    attrs = node.get("attr") or {}
    for key in DTYPE_ATTRS:
        attr = attrs.get(key)
        declared = attr.get("type") if isinstance(attr, dict) else None
        if declared:
            return declared in FLOAT_TYPES
    return True


def _node_name(tensor: str) -> str:
    return str(tensor).lstrip("^").split(":")[0]
