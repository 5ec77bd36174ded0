"""ONNX Runtime Web in headless Chromium: the page creates an InferenceSession from the .onnx over HTTP.

Backends: wasm (`threads` sets ort.env.wasm.numThreads; the page is cross-origin isolated, so above 1 the
threaded wasm runs) and webgpu (the one execution provider asked for; the adapter the browser exposes, SwiftShader
on a machine without a GPU, whose latency is no GPU's). Feeds are cast to the model's input types and put in its
layout as the converter's metadata says (`edgeport.input_permutations`), as the onnxruntime runtime does.
Models with external data files are not served (the page fetches the one .onnx). Shared machinery:
edgeport.browser.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgeport.browser import npm
from edgeport.browser.page_runtime import PageRuntime
from edgeport.contracts import Feeds
from edgeport.errors import RuntimeFailure
from edgeport.formats.onnx.conventions import INPUT_PERMUTATIONS_KEY, OUTPUT_PERMUTATIONS_KEY

HERE = Path(__file__).resolve().parent


def _model_facts(artifact: Path) -> tuple[dict[str, np.dtype], dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Input dtypes, input and output permutations, from the .onnx without its weights."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(artifact), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others
        raise RuntimeFailure(f"cannot read {artifact} as ONNX: {exc}") from None
    initializers = {tensor.name for tensor in model.graph.initializer}
    dtypes = {
        value.name: np.dtype(helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
        for value in model.graph.input
        if value.name not in initializers
    }
    metadata = {entry.key: entry.value for entry in model.metadata_props}
    inputs = {name: tuple(p) for name, p in json.loads(metadata.get(INPUT_PERMUTATIONS_KEY, "{}")).items()}
    outputs = {name: tuple(p) for name, p in json.loads(metadata.get(OUTPUT_PERMUTATIONS_KEY, "{}")).items()}
    return dtypes, inputs, outputs


class ORTWebRuntime(PageRuntime):
    name = "ort-web"
    artifact_suffixes = (".onnx",)
    description = "ONNX Runtime Web in headless Chromium (wasm or webgpu), the .onnx fetched over HTTP like a web app"
    engine = "onnxruntime-web"
    npm_package = npm.ORT_WEB
    page_dir = HERE
    npm_paths = ("onnxruntime-web/dist/",)

    def requirements(self):
        from edgeport.run.requirements import python_package

        return (*super().requirements(), python_package("onnx", extra="onnx", why="reads the model's input types"))

    def feeds_for(self, artifact: Path, feeds: list[Feeds]) -> list[Feeds]:
        dtypes, permutations, _ = _model_facts(artifact)
        prepared = []
        for feed in feeds:
            missing = sorted(set(dtypes) - set(feed))
            if missing:
                raise RuntimeFailure(f"ort-web: feed lacks model inputs {', '.join(missing)}")
            record = {}
            for name, dtype in dtypes.items():
                value = np.asarray(feed[name])
                if permutations.get(name):
                    value = np.transpose(value, permutations[name])
                record[name] = np.ascontiguousarray(value, dtype=dtype)
            prepared.append(record)
        return prepared

    def output_permutations(self, artifact: Path) -> dict[str, tuple[int, ...]]:
        return _model_facts(Path(artifact))[2]
