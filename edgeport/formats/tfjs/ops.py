"""What the pinned TF.js runtime executes, read from its npm packages (never a hand-typed list).

The op set comes from `@tensorflow/tfjs-converter/dist/operations/op_list/*.js` (the tables its
OperationMapper loads); the activations a fused Conv2D / DepthwiseConv2D / MatMul accepts come from
`@tensorflow/tfjs-core/dist/ops/fused_util.js`. When the packages are installed (`edgeport setup`), they are
read from there; otherwise from `ops-<version>.json`, the same tables of the pinned version shipped with
edgeport, so converting to TF.js needs no Node.js. Regenerate that file after changing the lockfile:

    python -m edgeport.formats.tfjs.ops --write
"""

from __future__ import annotations

import functools
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from edgeport.formats.tfjs import packages

OP_LIST_DIR = Path("@tensorflow/tfjs-converter/dist/operations/op_list")
FUSED_UTIL = Path("@tensorflow/tfjs-core/dist/ops/fused_util.js")
CONVERTER_PACKAGE = Path("@tensorflow/tfjs-converter/package.json")

_JS_STRING = re.compile(r"'((?:[^'\\]|\\.)*)'")
_TRAILING_COMMA = re.compile(r",(\s*[\]}])")
_ACTIVATION_TEST = re.compile(r"activation === '(\w+)'")


class RuntimeOpsMissing(Exception):
    """Neither the installed TF.js packages nor the shipped op tables can be read."""


@dataclass(frozen=True)
class RuntimeOps:
    version: str  # @tensorflow/tfjs-converter version
    ops: frozenset[str]  # TensorFlow op names the TF.js graph executor maps
    fused_activations: frozenset[str]  # lower-case names accepted in a fused op's `fused_ops`
    source: str  # the op_list folder they were read from, or the shipped table


def shipped_table() -> Path:
    return packages.HERE / f"ops-{packages.pinned_version('@tensorflow/tfjs-converter')}.json"


def load_runtime_ops() -> RuntimeOps:
    """The installed runtime's tables when it is installed, else the shipped tables of the pinned version."""
    root = packages.node_modules()
    if (root / OP_LIST_DIR).is_dir():
        return read_installed(root)
    return read_shipped(shipped_table())


@functools.lru_cache(maxsize=4)
def read_installed(node_modules: Path) -> RuntimeOps:
    op_dir = node_modules / OP_LIST_DIR
    files = sorted(op_dir.glob("*.js"))
    if not files:
        raise RuntimeOpsMissing(f"no TF.js op lists in {op_dir}; reinstall the runtime: {packages.SETUP_COMMAND}")
    ops: set[str] = set()
    for path in files:
        ops.update(entry["tfOpName"] for entry in parse_op_list(path.read_text()))
    fused_util = node_modules / FUSED_UTIL
    if not fused_util.is_file():
        raise RuntimeOpsMissing(f"{fused_util} is missing; reinstall the runtime: {packages.SETUP_COMMAND}")
    activations = frozenset(_ACTIVATION_TEST.findall(fused_util.read_text()))
    version = json.loads((node_modules / CONVERTER_PACKAGE).read_text())["version"]
    return RuntimeOps(version=version, ops=frozenset(ops), fused_activations=activations, source=str(op_dir))


@functools.lru_cache(maxsize=4)
def read_shipped(path: Path) -> RuntimeOps:
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RuntimeOpsMissing(
            f"the shipped TF.js op table {path} cannot be read ({exc}); reinstall edgeport"
        ) from None
    return RuntimeOps(
        version=table["version"],
        ops=frozenset(table["ops"]),
        fused_activations=frozenset(table["fused_activations"]),
        source=f"{path.name} (shipped)",
    )


def table_json(ops: RuntimeOps) -> str:
    return (
        json.dumps(
            {"version": ops.version, "ops": sorted(ops.ops), "fused_activations": sorted(ops.fused_activations)},
            indent=1,
        )
        + "\n"
    )


def parse_op_list(source: str) -> list[dict]:
    """The `export const json = [...]` table of one op_list module, as Python data."""
    start = source.index("export const json")
    body = source[source.index("[", start) :]
    body = body[: body.rindex("]") + 1]
    body = _JS_STRING.sub(lambda m: json.dumps(m.group(1).replace("\\'", "'")), body)
    body = _TRAILING_COMMA.sub(r"\1", body)
    return json.loads(body)


def unsupported_ops(op_names, runtime: RuntimeOps) -> list[str]:
    return sorted(op for op in set(op_names) if op not in runtime.ops)


def unsupported_message(missing: list[str], runtime: RuntimeOps) -> str:
    return (
        f"tfjs: ops TF.js {runtime.version} cannot run: {', '.join(missing)}; rewrite them in the model "
        "with ops TF.js supports, or pick another target"
    )


def main(argv: list[str]) -> int:
    """`--write`: regenerate the shipped table from the installed packages; `--check`: exit 1 if it differs."""
    installed = read_installed(packages.node_modules())
    if installed.version != packages.pinned_version("@tensorflow/tfjs-converter"):
        print(f"installed tfjs-converter {installed.version} is not the lockfile's; run {packages.SETUP_COMMAND}")
        return 1
    text, target = table_json(installed), shipped_table()
    if "--write" in argv:
        target.write_text(text, encoding="utf-8")
        print(f"wrote {target}")
        return 0
    same = target.is_file() and target.read_text(encoding="utf-8") == text
    print(f"{target} {'matches' if same else 'differs from'} {installed.source}")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
