"""LiteRT.js compiles static shapes only (it has no resize): the .tflite is served with its dynamic dimensions
pinned to the sizes the flatbuffer already allocates (`shape`, batch 1), which is what LiteRT's interpreter
runs when nothing is resized and what a web app ships. The artifact itself is never changed: a copy is served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgeport.errors import RuntimeFailure

PINNED_NOTE = "LiteRT.js runs static shapes only: the .tflite was served with its dynamic dimensions pinned to {shapes}"


def pin_dynamic_dimensions(artifact: Path, folder: Path) -> tuple[Path, str | None]:
    """A copy of `artifact` in `folder` with every shape_signature's -1 set to its `shape`; (path, note or None)."""
    from ai_edge_litert import schema_py_generated as schema

    data = bytearray(artifact.read_bytes())
    try:
        model = schema.Model.GetRootAsModel(data, 0)
    except Exception as exc:  # noqa: BLE001 - flatbuffers raises what a broken buffer makes it raise
        raise RuntimeFailure(f"{artifact} is not a .tflite flatbuffer: {exc}") from None
    pinned: dict[str, list[int]] = {}
    for s in range(model.SubgraphsLength()):
        subgraph = model.Subgraphs(s)
        inputs = set(subgraph.InputsAsNumpy().tolist()) if subgraph.InputsLength() else set()
        for t in range(subgraph.TensorsLength()):
            tensor = subgraph.Tensors(t)
            if tensor.ShapeSignatureIsNone() or tensor.ShapeSignatureLength() != tensor.ShapeLength():
                continue
            signature = tensor.ShapeSignatureAsNumpy()  # a view into `data`: written in place
            if not isinstance(signature, np.ndarray) or not (signature < 0).any():
                continue
            signature[:] = tensor.ShapeAsNumpy()
            if s == 0 and t in inputs:
                pinned[(tensor.Name() or b"?").decode(errors="replace")] = signature.tolist()
    if not pinned and bytes(data) == artifact.read_bytes():
        return artifact, None
    served = folder / artifact.name
    served.write_bytes(bytes(data))
    shapes = ", ".join(f"{name} {shape}" for name, shape in pinned.items()) or "the sizes the model allocates"
    return served, PINNED_NOTE.format(shapes=shapes)
