"""`edgeport.toml`: model, data, targets and, per target, options, tolerances and budgets.

    model = "saved_model"            # relative paths are relative to the config file
    data = "holdout.npz"
    calibration = "calib.npz"        # optional
    output = "edgeport-out"
    targets = ["tflite", "tflite:int8"]
    threads = 1
    jobs = 1
    signature = "serving_default"
    strict = false
    trust_model = false              # true: run a model the pre-load scan flags (file system, writers, py_func...)

    [bench]                          # the timing protocol
    warmup_runs = 3
    min_runs = 20
    min_seconds = 1.0
    max_seconds = 20.0

    [target."tflite:int8"]           # converter options, tolerances, budgets, runtime, backend
    io_type = "int8"
    min_top1_agreement = 0.98
    max_p50_ms = 5.0

Every unknown key is an error naming it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from edgeport.data import TimingProtocol
from edgeport.errors import UsageError

TOP_LEVEL = {
    "model": str,
    "data": str,
    "calibration": str,
    "output": str,
    "targets": list,
    "threads": int,
    "jobs": int,
    "signature": str,
    "tags": list,
    "strict": bool,
    "trust_model": bool,
    "samples": int,
    "seed": int,
    "input_range": list,
    "input_shape": list,
    "preprocess": str,
    "bench": dict,
    "target": dict,
    "baseline": str,
    "history": str,
}


@dataclass(frozen=True)
class Config:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    target_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def path_value(self, key: str) -> Path | None:
        value = self.values.get(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path)


def load_config(path: Path) -> Config:
    if not path.is_file():
        raise UsageError(f"config {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"config {path}: not valid TOML ({exc})") from None
    for key, value in data.items():
        if key not in TOP_LEVEL:
            raise UsageError(f"config {path}: unknown key {key!r}; known keys: {', '.join(TOP_LEVEL)}")
        expected = TOP_LEVEL[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"config {path}: {key} must be a {expected.__name__}, got {type(value).__name__}")
    protocol_keys = {f.name for f in fields(TimingProtocol)}
    bench = data.pop("bench", {})
    for key in bench:
        if key not in protocol_keys:
            raise UsageError(
                f"config {path}: unknown key {key!r} in [bench]; known: {', '.join(sorted(protocol_keys))}"
            )
    tables = data.pop("target", {})
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f'config {path}: target.{name} must be a table ([target."{name}"])')
    return Config(path=path, values=data, target_tables=tables, protocol=bench)
