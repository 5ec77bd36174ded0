"""`--resume`: what a model's run depends on, hashed; a model whose report is complete and whose hash is unchanged
is reused instead of rerun.

The hash covers every file of the SavedModel (path and bytes), the data and calibration files, the whole run
request but its output folder (targets, options, tolerances, budgets, samples, timing protocol), edgeport's
version and the versions of the Python distributions edgeport depends on (TensorFlow, the converters and the
runtimes). It is written next to the report (`OUT/<model>/fleet-inputs.json`) by the task, after the report.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from edgeport.fleet.manifest import FleetModel
from edgeport.report.files import atomic_write, jsonable

STAMP = "fleet-inputs.json"
_CHUNK = 1 << 20


def fingerprint(model: FleetModel) -> str:
    digest = hashlib.sha256()
    request = dataclasses.asdict(model.request)
    request.pop("out")
    digest.update(json.dumps(jsonable(request), sort_keys=True, default=str).encode())
    digest.update(json.dumps(versions(), sort_keys=True).encode())
    _hash_tree(digest, model.path)
    for sample_request in (model.request.samples, model.request.calibration):
        if sample_request is not None and sample_request.data is not None:
            _hash_tree(digest, Path(sample_request.data))
    return digest.hexdigest()


def versions() -> dict[str, str]:
    """edgeport's version and those of every distribution it depends on (installed or not)."""
    from importlib.metadata import PackageNotFoundError, requires, version

    def installed(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "absent"

    names = {"edgeport"}
    try:
        for requirement in requires("edgeport") or ():
            match = re.match(r"[A-Za-z0-9._-]+", requirement)
            if match and match.group(0) != "edgeport":
                names.add(match.group(0).lower())
    except PackageNotFoundError:
        pass
    return {name: installed(name) for name in sorted(names)}


def _hash_tree(digest, root: Path) -> None:
    files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
    for file in files:
        digest.update(str(file.relative_to(root) if root.is_dir() else file.name).encode() + b"\0")
        with file.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        digest.update(b"\0")


def write_stamp(out: Path, hash_: str) -> None:
    atomic_write(out / STAMP, json.dumps({"fingerprint": hash_}, indent=2) + "\n")


def reusable_report(model: FleetModel, hash_: str) -> dict[str, Any] | None:
    """The model's earlier report.json when it is complete (every target asked for is in it) and its inputs
    are unchanged; else None."""
    out = model.request.out
    try:
        stamp = json.loads((out / STAMP).read_text(encoding="utf-8"))
        report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if stamp.get("fingerprint") != hash_ or "exit_code" not in report:
        return None
    done = {t.get("name") for t in report.get("targets", [])}
    if done != {t.name for t in model.request.targets} or set(report.get("verdicts", {})) != done:
        return None
    return report
