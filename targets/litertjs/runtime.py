"""LiteRT.js in headless Chromium: the page fetches the .tflite over HTTP and compiles it with loadAndCompile.

Backends: wasm (XNNPACK in WebAssembly; `threads` above 1 loads LiteRT.js's threaded build, the page being
cross-origin isolated) and webgpu (the adapter the browser exposes; SwiftShader on a machine without a GPU,
whose latency is no GPU's). LiteRT.js compiles static shapes only, so dynamic dimensions are pinned
in a served copy (static.py) and the report says so. The model runs its default signature with named
inputs; every run copies its inputs into LiteRT's memory and its outputs back to JavaScript, as a web app
would. Shared machinery:
edgeport.browser (page server, Chromium, wire, the timing protocol, the pinned npm packages).
"""

from __future__ import annotations

from pathlib import Path

from edgeport.browser import npm
from edgeport.browser.page_runtime import PageRuntime

HERE = Path(__file__).resolve().parent
# The tensor types @litertjs/core takes (its DATATYPES: Float32Array, Int32Array, Uint8Array); any other input or
# output type fails in the page with "Element type INT8 is not supported."
TENSOR_TYPES = ("float32", "int32", "uint8")


class LiteRTJSRuntime(PageRuntime):
    name = "litertjs-browser"
    artifact_suffixes = (".tflite",)
    description = "LiteRT.js in headless Chromium (wasm or webgpu), the .tflite fetched over HTTP like a web app"
    engine = "LiteRT.js"
    npm_package = npm.LITERTJS
    page_dir = HERE
    npm_paths = ("@litertjs/core/dist/", "@litertjs/core/wasm/", "@litertjs/wasm-utils/dist/")

    def cannot_run(self, artifact: Path) -> str | None:
        """An input or output of a type LiteRT.js does not take (int8, int16, int64, bool, float16, string)."""
        from edgeport.formats.tflite.flatbuffer import io_tensor_types

        refused = {name: kind for name, kind in io_tensor_types(artifact).items() if kind not in TENSOR_TYPES}
        if not refused:
            return None
        listed = ", ".join(f"{name} is {kind}" for name, kind in refused.items())
        fix = " (convert with --io-type float: the model inside stays int8)" if "int8" in refused.values() else ""
        return (
            f"LiteRT.js {npm.installed_version(self.npm_package) or ''} takes {', '.join(TENSOR_TYPES)} inputs and "
            f"outputs only; {listed}{fix}, or check it on litert"
        )

    def served(self, artifact: Path, folder: Path) -> tuple[Path, str | None]:
        """LiteRT.js has no resize: dynamic dimensions pinned in a served copy (targets/litertjs/static.py)."""
        from edgeport.targets.litertjs.static import pin_dynamic_dimensions

        return pin_dynamic_dimensions(artifact, folder)
