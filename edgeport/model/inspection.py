"""`edgeport inspect`: what the SavedModel holds, and a per-target pre-flight that needs no conversion."""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from edgeport.model.scan import ScanResult, describe_finding
from edgeport.report import wording


def inspect_model(
    model: Path, *, signature: str | None = None, families=(), force_v1: bool = False, trust_model: bool = False
) -> dict[str, Any]:
    """What `edgeport inspect` shows. A model the pre-load scan flags is not loaded without `trust_model`
    (loading runs its initializers): the result then holds the scan, `loaded: false` and a note saying why."""
    from edgeport.errors import ModelLoadError, UntrustedModel
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
                ModelService,
                str(model),
                signature,
                None,
                force_v1,
                1,
                trust_model,
                log_path=Path(log.name),
                what="model loader",
            )
        except UntrustedModel as exc:
            return _not_loaded(model, exc.scan)
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
        "loaded": True,
        "scan": {**info.scan.to_dict(), "trusted": info.trusted},
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


def _not_loaded(model: Path, scan: ScanResult) -> dict[str, Any]:
    return {
        "path": str(model),
        "loaded": False,
        "scan": {**scan.to_dict(), "trusted": False},
        "notes": [
            "not loaded: loading runs the model's initializers, and the pre-load scan flagged it; pass --trust-model "
            "to load it and see its signatures, ops and pre-flight (convert, check and bench refuse it without)"
        ],
    }


def print_inspection(result: dict[str, Any]) -> None:
    console = Console() if Console().is_terminal else Console(width=150)  # logs: long lines, no wrapping
    _print_scan(console, result["path"], result["scan"])
    if not result["loaded"]:
        for note in result["notes"]:
            console.print(f"[yellow]note:[/] {escape(note)}")
        return
    sig = result["signature"]
    console.print(
        f"[bold]{result['path']}[/]  tags {'/'.join(result['tags'])}  loaded as {result['mode']}  "
        f"{wording.size(result['size_bytes'])}  {result['parameters']:,} parameters"
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


def _print_scan(console: Console, path: str, scan: dict[str, Any]) -> None:
    read = f"{scan['nodes']:,} nodes in the graph and {scan['functions']:,} functions"
    if scan["clean"]:
        console.print(f"[bold]pre-load scan[/] of {escape(path)}: [green]clean[/] ({read})")
        return
    count = len(scan["findings"])
    trusted = " [yellow](trusted with --trust-model)[/]" if scan["trusted"] else ""
    console.print(f"[bold]pre-load scan[/] of {escape(path)}: [red]{count} op(s) flagged[/]{trusted} ({read})")
    for f in scan["findings"]:
        console.print(f"  [red]{escape(f['family'])}[/]: {escape(describe_finding(f))}")
