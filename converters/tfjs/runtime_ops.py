"""What the pinned TF.js runtime executes, read from the installed npm packages (never a hand-typed list).

The op set comes from `@tensorflow/tfjs-converter/dist/operations/op_list/*.js` (the tables its
OperationMapper loads); the activations a fused Conv2D / DepthwiseConv2D / MatMul accepts come from
`@tensorflow/tfjs-core/dist/ops/fused_util.js`. node_modules is `$EDGEPORT_TFJS_NODE_MODULES` or
`<edgeport.targets>/tfjs/node_modules`.
"""
from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

NODE_MODULES_ENV = "EDGEPORT_TFJS_NODE_MODULES"
OP_LIST_DIR = Path("@tensorflow/tfjs-converter/dist/operations/op_list")
FUSED_UTIL = Path("@tensorflow/tfjs-core/dist/ops/fused_util.js")
CONVERTER_PACKAGE = Path("@tensorflow/tfjs-converter/package.json")

_JS_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_ACTIVATION_TEST = re.compile(r"activation === '(\w+)'")


class RuntimeOpsMissing(Exception):
    """The TF.js npm packages are not where edgeport looks for them."""


@dataclass(frozen=True)
class RuntimeOps:
    version: str  # @tensorflow/tfjs-converter version
    ops: frozenset[str]  # TensorFlow op names the TF.js graph executor maps
    fused_activations: frozenset[str]  # lower-case names accepted in a fused op's `fused_ops`
    source: Path  # the op_list folder they were read from


def node_modules_dir() -> Path:
    configured = os.environ.get(NODE_MODULES_ENV)
    if configured:
        return Path(configured)
    import edgeport.targets  # noqa: PLC0415 - light package, only needed to find the folder

    return Path(edgeport.targets.__file__).parent / "tfjs" / "node_modules"


def install_hint() -> str:
    project = node_modules_dir().parent
    return f"npm ci --prefix {project}"


def load_runtime_ops() -> RuntimeOps:
    return _load(node_modules_dir().resolve())


@functools.lru_cache(maxsize=4)
def _load(node_modules: Path) -> RuntimeOps:
    op_dir = node_modules / OP_LIST_DIR
    files = sorted(op_dir.glob("*.js"))
    if not files:
        raise RuntimeOpsMissing(f"no TF.js op lists in {op_dir}; install the runtime with `{install_hint()}` "
                                f"or point ${NODE_MODULES_ENV} at a node_modules holding @tensorflow/tfjs")
    ops: set[str] = set()
    for path in files:
        ops.update(entry["tfOpName"] for entry in parse_op_list(path.read_text()))
    fused_util = node_modules / FUSED_UTIL
    if not fused_util.is_file():
        raise RuntimeOpsMissing(f"{fused_util} is missing; reinstall the runtime with `{install_hint()}`")
    activations = frozenset(_ACTIVATION_TEST.findall(fused_util.read_text()))
    version = json.loads((node_modules / CONVERTER_PACKAGE).read_text())["version"]
    return RuntimeOps(version=version, ops=frozenset(ops), fused_activations=activations, source=op_dir)


def parse_op_list(source: str) -> list[dict]:
    """The `export const json = [...]` table of one op_list module, as Python data."""
    start = source.index("export const json")
    body = source[source.index("[", start):]
    body = body[: body.rindex("]") + 1]
    body = _JS_STRING.sub(lambda m: json.dumps(m.group(1).replace("\\'", "'")), body)
    body = _TRAILING_COMMA.sub(r"\1", body)
    return json.loads(body)


def unsupported_ops(op_names, runtime: RuntimeOps) -> list[str]:
    return sorted(op for op in set(op_names) if op not in runtime.ops)


def unsupported_message(missing: list[str], runtime: RuntimeOps) -> str:
    return (f"tfjs: ops TF.js {runtime.version} cannot run: {', '.join(missing)}; rewrite them in the model "
            "with ops TF.js supports, or pick another target")
