"""A fleet manifest: every SavedModel of a team, each with the convert config keys, parsed and validated.

    targets = ["tflite", "tflite:int8"]      # defaults for every model: any edgeport.toml key but model/output
    models = ["models/*"]                    # globs of SavedModel folders (relative to the manifest)
    [bench]
    min_runs = 30
    [[model]]
    path = "models/detector"                 # relative to the manifest; name = its folder's name unless given
    name = "detector"
    targets = ["tflite:int8", "tflm"]
    [model.target."tflite:int8"]             # per-model overrides, the same schema as edgeport.toml
    min_top1_agreement = 0.99

Every model's RunRequest is built here, in the driver, by the builder `edgeport convert --config` uses, so a
bad key, target, option or path fails before Ray starts (one line, exit 2) naming the key and the model entry.
"""

from __future__ import annotations

import glob
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.cli.config import TOP_LEVEL, Config, parse_config, read_toml
from edgeport.errors import EdgeportError, UsageError
from edgeport.run.request import RunRequest

PER_RUN = ("model", "output", "baseline", "history")  # what a fleet sets per model itself, or once (history)
MODEL_KEYS: dict[str, type] = {"path": str, "name": str, **{k: v for k, v in TOP_LEVEL.items() if k not in PER_RUN}}
FLEET_KEYS: dict[str, type] = {
    **{k: v for k, v in TOP_LEVEL.items() if k not in PER_RUN},
    "models": list,
    "model": list,
    "history": str,
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class FleetModel:
    name: str  # its folder under OUT
    path: Path  # the SavedModel folder (absolute)
    request: RunRequest  # what `edgeport convert` would be asked, output OUT/<name>
    where: str  # the manifest entry it came from, for messages


@dataclass(frozen=True)
class FleetManifest:
    path: Path
    models: tuple[FleetModel, ...]
    history: Path | None = None


@dataclass(frozen=True)
class _Entry:
    table: dict[str, Any]
    where: str


def load_manifest(path: Path, out: Path, *, bench: bool = True, check: bool = True) -> FleetManifest:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"manifest {path} does not exist; pass the fleet's TOML file")
    data = read_toml(path, "manifest")
    defaults = _split_defaults(data, path)
    entries = _entries(data, path)
    models: list[FleetModel] = []
    names: dict[str, str] = {}
    for entry in entries:
        model = _model(entry, defaults, path, Path(out), bench=bench, check=check)
        if model.name in names:
            raise UsageError(
                f"manifest {path}: two models are named {model.name!r} ({names[model.name]} and {model.where}); "
                'give one a name = "..."'
            )
        names[model.name] = model.where
        models.append(model)
    if not models:
        raise UsageError(f'manifest {path}: no models; add [[model]] entries or models = ["models/*"]')
    history = defaults.values.get("history")
    return FleetManifest(path=path, models=tuple(models), history=defaults.path_value("history") if history else None)


def _split_defaults(data: Mapping[str, Any], path: Path) -> Config:
    allowed = {k: v for k, v in FLEET_KEYS.items() if k not in ("models", "model")}
    top = {k: v for k, v in data.items() if k not in ("models", "model")}
    for key in ("models", "model"):
        if key in data and not isinstance(data[key], list):
            raise UsageError(f"manifest {path}: {key} must be a list, got {type(data[key]).__name__}")
    return parse_config(top, path, where=f"manifest {path}", allowed=allowed)


def _entries(data: Mapping[str, Any], path: Path) -> list[_Entry]:
    """[[model]] entries, then one entry per folder a `models` glob matches that no [[model]] names."""
    entries: list[_Entry] = []
    for number, table in enumerate(data.get("model", []), start=1):
        if not isinstance(table, dict):
            raise UsageError(f"manifest {path}: model entry {number} must be a table ([[model]])")
        label = f"[[model]] {number}" + (f" ({table['path']})" if isinstance(table.get("path"), str) else "")
        if "path" not in table:
            raise UsageError(f'manifest {path}: {label}: no path; set path = "models/NAME" (the SavedModel folder)')
        entries.append(_Entry(dict(table), label))
    explicit = {_resolve(path, e.table["path"]) for e in entries if isinstance(e.table["path"], str)}
    for pattern in data.get("models", []):
        if not isinstance(pattern, str):
            raise UsageError(f"manifest {path}: models: {pattern!r} is not a glob string")
        matches = sorted(p for p in _glob(path, pattern) if p.is_dir())
        if not matches:
            raise UsageError(f"manifest {path}: models = [{pattern!r}] matches no folder next to the manifest")
        for match in matches:
            if match.resolve() not in explicit:
                explicit.add(match.resolve())
                entries.append(_Entry({"path": str(match)}, f"models {pattern!r} ({match.name})"))
    return entries


def _glob(manifest: Path, pattern: str) -> list[Path]:
    base = Path(pattern).expanduser()
    if base.is_absolute():
        return [Path(p) for p in glob.glob(str(base))]
    return list(manifest.parent.glob(pattern))


def _resolve(manifest: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return (path if path.is_absolute() else manifest.parent / path).resolve()


def _merged(defaults: Config, entry: Config) -> Config:
    """A model's settings: the fleet's, each key overridden by the entry's; [bench] and [target.X] per key."""
    tables = {name: dict(table) for name, table in defaults.target_tables.items()}
    for name, table in entry.target_tables.items():
        tables[name] = {**tables.get(name, {}), **table}
    values = {k: v for k, v in defaults.values.items() if k != "history"}
    return Config(
        path=defaults.path,
        values={**values, **entry.values},
        target_tables=tables,
        protocol={**defaults.protocol, **entry.protocol},
    )


def _model(entry: _Entry, defaults: Config, path: Path, out: Path, *, bench: bool, check: bool) -> FleetModel:
    where = f"manifest {path}: {entry.where}"
    config = _merged(defaults, parse_config(entry.table, path, where=where, allowed=MODEL_KEYS))
    model_path = config.path_value("path")
    assert model_path is not None  # every entry has a path (checked in _entries)
    name = str(config.values.get("name") or model_path.resolve().name)
    if not NAME.match(name):
        raise UsageError(f'{where}: model name {name!r} is not a folder name; set name = "..." (letters, digits, ._-)')
    try:
        _check_paths(config, model_path)
        request = _request(config, model_path, out / name, bench=bench, check=check)
    except EdgeportError as exc:
        raise UsageError(f"{where}: {exc.message}") from None
    return FleetModel(name=name, path=model_path.resolve(), request=request, where=entry.where)


def _check_paths(config: Config, model_path: Path) -> None:
    from edgeport.model.savedmodel import check_saved_model_dir  # light: no TensorFlow

    check_saved_model_dir(model_path)
    for key in ("data", "calibration"):
        value = config.path_value(key)
        if value is not None and not value.exists():
            raise UsageError(f"{key} {value} does not exist; pass an .npz, .npy or a folder of images")
    if not config.values.get("targets") and not config.target_tables:
        raise UsageError('no targets; set targets = ["tflite", ...] for the fleet or this model')


def _request(config: Config, model_path: Path, out: Path, *, bench: bool, check: bool) -> RunRequest:
    from edgeport.cli.commands import build_request
    from edgeport.model.samples import SampleRequest

    values = {k: v for k, v in config.values.items() if k not in ("path", "name")}
    return build_request(
        model=model_path,
        targets=(),
        output=out,
        config_path=None,
        config=Config(path=config.path, values=values, target_tables=config.target_tables, protocol=config.protocol),
        samples=SampleRequest(),
        calibration=None,
        signature=None,
        threads=None,
        jobs=None,
        shared_options={},
        backend=None,
        protocol_overrides={},
        check=check,
        bench=bench,
        baseline=False,  # the SavedModel row is timed in the model service, outside the benchmark slot
        strict=None,
        legacy=False,
    )
