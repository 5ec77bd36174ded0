"""`edgeport inspect`: what the SavedModel holds, and a per-target pre-flight that needs no conversion."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from edgeport.report.files import human_bytes


def inspect_model(model: Path, *, signature: str | None = None, families=(), force_v1: bool = False) -> dict[str, Any]:
    from edgeport.errors import ModelLoadError
    from edgeport.model.savedmodel import check_saved_model_dir
    from edgeport.run.isolation import PluginCrash, Worker
    from edgeport.run.registry import registry
    from edgeport.run.service import ModelService

    check_saved_model_dir(Path(model))
    converters = registry().converters()
    chosen = [converters[name] if name in converters else registry().converter(name) for name in families] or list(
        converters.values()
    )
    with tempfile.NamedTemporaryFile(prefix="edgeport-inspect-", suffix=".log") as log:
        try:
            worker = Worker(
                ModelService, str(model), signature, None, force_v1, log_path=Path(log.name), what="model loader"
            )
        except PluginCrash as exc:
            raise ModelLoadError(f"cannot load {model}: {exc.message}") from None
        with worker:
            info = worker.description
            summary = worker.call("graph_summary")
            findings = worker.call("preflight", [(c, c.Options()) for c in chosen])
    preflight: dict[str, list[dict[str, str]]] = {c.name: [] for c in chosen}
    for finding in findings:
        preflight.setdefault(finding.target, []).append({"severity": finding.severity, "message": finding.message})
    return {
        "path": str(model),
        "tags": list(info.tags),
        "signature_keys": list(info.signature_keys),
        "signature": dataclasses.asdict(info.signature),
        "mode": info.mode,
        "notes": list(info.notes),
        "parameters": info.parameters,
        "size_bytes": info.size_bytes,
        "tensorflow_version": info.tensorflow_version,
        **summary,
        "preflight": preflight,
    }


def print_inspection(result: dict[str, Any]) -> None:
    console = Console() if Console().is_terminal else Console(width=150)  # logs: long lines, no wrapping
    sig = result["signature"]
    console.print(
        f"[bold]{result['path']}[/]  tags {'/'.join(result['tags'])}  loaded as {result['mode']}  "
        f"{human_bytes(result['size_bytes'])}  {result['parameters']:,} parameters"
    )
    console.print(f"signatures: {', '.join(result['signature_keys'])}  (showing [bold]{sig['key']}[/])")
    for note in result["notes"]:
        console.print(f"[yellow]note:[/] {note}")
    table = Table(title_justify="left")
    for column in ("", "name", "dtype", "shape"):
        table.add_column(column)
    for kind in ("inputs", "outputs"):
        for spec in sig[kind]:
            shape = (
                "?"
                if spec["shape"] is None
                else "[" + ", ".join("?" if d is None else str(d) for d in spec["shape"]) + "]"
            )
            table.add_row(kind[:-1], spec["name"], spec["dtype"], shape)
    console.print(table)
    ops = result["op_histogram"]
    console.print("ops: " + ", ".join(f"{op}×{count}" for op, count in ops.items()))
    for key, label in (
        ("control_flow_ops", "control flow"),
        ("dynamic_shapes", "dynamic shapes"),
        ("string_or_resource_tensors", "string/resource tensors"),
    ):
        if result[key]:
            console.print(f"{label}: {', '.join(result[key])}")
    console.print("[bold]pre-flight[/]")
    for family, findings in result["preflight"].items():
        if not findings:
            console.print(f"  {family}: [green]no problems found[/]")
        for finding in findings:
            color = {"error": "red", "warning": "yellow"}.get(finding["severity"], "white")
            console.print(f"  {family}: [{color}]{finding['severity']}[/] {finding['message']}")
