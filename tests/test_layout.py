"""The layout is the architecture: a test walks every import of edgeport, its converters and its targets.

- A converter never imports a runtime, a runtime never imports a converter, and no format family imports
  another's package: what a converter and a runtime of one format share lives in `edgeport.formats.<format>`.
- The core (`edgeport.*` outside converters and targets) knows no plug-in by module: only the registry finds them.
- A `formats` module serves one format and imports no plug-in.
- No import cycles between modules (function-level and `if TYPE_CHECKING:` imports count).
- No private name (`_x`) is imported from another module.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TREES = {"edgeport": "edgeport", "converters": "edgeport.converters", "targets": "edgeport.targets"}


@dataclass(frozen=True)
class Import:
    module: str  # importing module
    target: str  # imported module (or the module a name was imported from)
    names: tuple[str, ...]
    line: int
    type_only: bool


def module_files() -> dict[str, Path]:
    modules = {}
    for tree, prefix in TREES.items():
        for path in sorted((ROOT / tree).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            parts = path.relative_to(ROOT / tree).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join((prefix, *parts))] = path
    return modules


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports_of(module: str, path: Path, known: set[str]) -> list[Import]:
    found: list[Import] = []
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST, type_only: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for inner in child.body:
                    visit_statement(inner, True)
                for inner in child.orelse:
                    visit_statement(inner, type_only)
                continue
            visit_statement(child, type_only)

    def visit_statement(child: ast.AST, type_only: bool) -> None:
        if isinstance(child, ast.Import):
            for alias in child.names:
                found.append(Import(module, alias.name, (), child.lineno, type_only))
        elif isinstance(child, ast.ImportFrom):
            base = child.module or ""
            if child.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - child.level + 1] + ([base] if base else [])
                )
            for alias in child.names:
                submodule = f"{base}.{alias.name}"
                target = submodule if submodule in known else base
                found.append(Import(module, target, (alias.name,), child.lineno, type_only))
        visit(child, type_only)

    visit(ast.parse(path.read_text(encoding="utf-8")), False)
    return [i for i in found if i.target.startswith("edgeport")]


def all_imports() -> list[Import]:
    files = module_files()
    known = set(files)
    return [imp for module, path in files.items() for imp in imports_of(module, path, known)]


def family(module: str) -> tuple[str, str] | None:
    """("converters" | "targets" | "formats", family name) or None for the core."""
    parts = module.split(".")
    if len(parts) >= 3 and parts[1] in ("converters", "targets", "formats"):
        return parts[1], parts[2]
    return None


def violations(imp: Import) -> str | None:
    source, target = family(imp.module), family(imp.target)
    where = f"{imp.module}:{imp.line} imports {imp.target}"
    is_plugin_target = imp.target.startswith(("edgeport.converters", "edgeport.targets"))
    if source is None and is_plugin_target and imp.target not in ("edgeport.converters", "edgeport.targets"):
        return f"{where}: the core knows plug-ins only through the registry"
    if source is None or target is None:
        return None
    (kind, name), (target_kind, target_name) = source, target
    if kind == "formats" and target_kind != "formats":
        return f"{where}: formats modules import no plug-in"
    if kind == "converters" and target_kind == "targets":
        return f"{where}: a converter never imports a runtime"
    if kind == "targets" and target_kind == "converters":
        return f"{where}: a runtime never imports a converter"
    if target_kind == kind and target_name != name:
        return f"{where}: across format families; move what both need to edgeport.formats"
    return None


def test_no_import_crosses_format_families_or_goes_from_a_converter_to_a_runtime():
    imports = all_imports()
    assert len(imports) > 200  # the walk found the code base
    problems = [problem for imp in imports if (problem := violations(imp))]
    assert not problems, "\n".join(problems)


def test_the_walk_catches_a_converter_importing_a_runtime():
    crossing = Import("edgeport.converters.onnx.converter", "edgeport.targets.onnxruntime.runtime", (), 1, False)
    assert "a converter never imports a runtime" in violations(crossing)
    sideways = Import("edgeport.converters.tflm.converter", "edgeport.converters.tflite.converter", (), 1, False)
    assert "across format families" in violations(sideways)
    shared = Import("edgeport.converters.tflm.converter", "edgeport.formats.tflite.conversion", (), 1, False)
    assert violations(shared) is None


# What each core package may import (its __init__ docstring says the same in words): a package's outward
# edges are the architecture; a new edge is a decision to make here, not an accident.
MAY_IMPORT = {
    "checks": {"data", "errors", "model", "report"},
    "report": {"checks", "errors"},
    "model": {"data", "errors", "report", "run"},
    "formats": {"data", "errors", "model", "checks", "report", "run"},
    "fleet": {"checks", "cli", "errors", "model", "report", "run", "data", "contracts"},
}
NEVER_FROM_RUN = {"model": {"edgeport.model.inspection"}}  # `inspect` starts a model service; nothing else may


def core_package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_each_core_package_imports_only_what_its_docstring_allows():
    problems = []
    for imp in all_imports():
        source, target = core_package(imp.module), core_package(imp.target)
        if source == target or source not in MAY_IMPORT:
            continue
        if target not in MAY_IMPORT[source] and target != "":
            problems.append(f"{imp.module}:{imp.line} imports {imp.target}")
        if target == "run" and source in NEVER_FROM_RUN and imp.module not in NEVER_FROM_RUN[source]:
            problems.append(f"{imp.module}:{imp.line} imports {imp.target}: only inspection may")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    graph: dict[str, set[str]] = {}
    for imp in all_imports():
        if imp.target != imp.module:
            graph.setdefault(imp.module, set()).add(imp.target)
    cycles = [component for component in strongly_connected(graph) if len(component) > 1]
    assert not cycles, cycles


def test_no_private_name_is_imported_from_another_module():
    private = [
        f"{imp.module}:{imp.line} imports {name} from {imp.target}"
        for imp in all_imports()
        for name in imp.names
        if name.startswith("_") and not name.startswith("__")
    ]
    assert not private, "\n".join(private)


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iteratively."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components
