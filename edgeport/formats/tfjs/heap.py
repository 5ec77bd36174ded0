"""How big a TF.js graph model the wasm backend runs right: what the converter says and the runtimes pick by.

tfjs-backend-wasm 4.22 keeps every weight in one WebAssembly heap, which can grow to 4 GiB (its getHeapMax).
Past 2 GiB it computes wrong outputs: measured on a 2.4 GB model (139 Dense layers), cosine 0.31 against the
SavedModel on wasm, 1.000000 on the cpu backend, with the same shards loaded byte-exact (the family of
emscripten heaps read through signed 32-bit pointers past 2^31). So a model whose weights reach
WASM_CORRECT_HEAP_BYTES is checked and benchmarked on the cpu backend unless a backend is chosen, and the
report says why.
"""

from __future__ import annotations

import json
from pathlib import Path

WASM_HEAP_MAX_BYTES = 4294901760  # tfjs-backend-wasm 4.22's getHeapMax(): weights, activations, the runtime
WASM_CORRECT_HEAP_BYTES = 1 << 31  # from here on its outputs are wrong (measured; see above)


def weight_bytes(model_json: Path) -> int:
    """The bytes of a graph model's weight shards (as listed in its model.json)."""
    folder = model_json.parent
    try:
        manifest = json.loads(model_json.read_text()).get("weightsManifest") or []
    except (OSError, ValueError):
        return 0
    paths = [folder / name for group in manifest for name in group.get("paths", [])]
    return sum(path.stat().st_size for path in paths if path.is_file())


def past_wasm(weight_count_bytes: int) -> bool:
    return weight_count_bytes >= WASM_CORRECT_HEAP_BYTES


def wasm_note(weight_count_bytes: int) -> str:
    """What the report says about a model past WASM_CORRECT_HEAP_BYTES."""
    from edgeport.report import wording

    size = wording.size(weight_count_bytes)
    if weight_count_bytes >= WASM_HEAP_MAX_BYTES:
        reach = f"past the wasm backend's whole heap ({wording.size(WASM_HEAP_MAX_BYTES)}): it cannot load it"
    else:
        reach = (
            "past 2 GiB of the wasm backend's heap, where tfjs-backend-wasm computes wrong outputs "
            "(measured: cosine 0.31 on 2.4 GB of weights, 1.000000 on cpu)"
        )
    return (
        f"{size} of weights: {reach}; checked and benchmarked on the cpu backend unless --backend is given, "
        "and a browser app needs the cpu or webgl backend for it"
    )
