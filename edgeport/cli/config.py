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
    stage_timeout = 600              # seconds any stage may take, or per stage a table [stage_timeout]
                                     # with load, convert, check, bench (defaults 600, 900, 600, 600)

    [bench]                          # the timing protocol
    warmup_runs = 3
    min_runs = 20
    min_seconds = 1.0
    max_seconds = 20.0

    [target."tflite:int8"]           # converter options, tolerances, budgets, runtime, backend
    io_type = "int8"
    min_top1_agreement = 0.98
    max_p50_ms = 5.0

    [device.pi5]                     # a board to check and benchmark on, over ssh (edgeport/device/config)
    ssh = "pi@pi5.local"             # also port, python, workdir, threads, env, ssh_config; never a password

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
    "labels": str,  # FILE.npy, FILE.npz:KEY or a KEY of the data .npz (checks/task)
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
    "layers": bool,  # per-layer comparison of every checked target (checks/layers)
    "sequential": bool,  # every stage in turn: no check beside a conversion
    "max_memory": str,  # what any one process tree may hold: "8GB", "512MB", or "off" (run/memory)
    "stage_timeout": object,  # seconds (every stage) or a table {stage = seconds}; checked by parse_stage_timeouts
}

AT_LEAST_ONE = ("threads", "jobs", "samples")  # counts: 0 or less is no setting, never a default


@dataclass(frozen=True)
class Config:
    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    target_tables: dict[str, dict[str, Any]] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)
    device_tables: dict[str, Any] = field(default_factory=dict)  # [device.NAME]: --device NAME (edgeport/device)

    def get(self, key: str, default=None):
        return self.values.get(key, default)

    def path_value(self, key: str) -> Path | None:
        value = self.values.get(key)
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.path.parent / path)


def load_config(path: Path) -> Config:
    from edgeport.run.request import check_path

    check_path(path, "--config")
    if path.is_dir():
        raise UsageError(f"config {path} is a directory; pass the edgeport.toml file in it (--config FILE)")
    if not path.is_file():
        raise UsageError(f"config {path} does not exist")
    return parse_config(read_toml(path, "config"), path)


def read_toml(path: Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{what} {path}: not valid TOML ({exc})") from None


def parse_config(
    data: dict[str, Any], path: Path, *, where: str | None = None, allowed: dict[str, type] | None = None
) -> Config:
    """Validate one config table (edgeport.toml, or a fleet manifest's entry: `where` names it in errors,
    `allowed` narrows the keys); relative paths in it stay relative to `path`."""
    where = where or f"config {path}"
    data = dict(data)
    devices = data.pop("device", {}) if allowed is None else {}  # edgeport.toml only; a fleet has no devices
    allowed = TOP_LEVEL if allowed is None else allowed
    for key, value in data.items():
        if key not in allowed:
            raise UsageError(f"{where}: unknown key {key!r}; known keys: {', '.join(allowed)}")
        expected = allowed[key]
        if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise UsageError(f"{where}: {key} must be a {expected.__name__}, got {type(value).__name__}")
        if key in AT_LEAST_ONE and isinstance(value, int) and value < 1:
            raise UsageError(f"{where}: {key} must be 1 or more, got {value}")
        if key in ("threads", "jobs"):  # and at most run/request.MAX_THREADS, MAX_JOBS
            from edgeport.run.request import check_jobs, check_threads

            (check_threads if key == "threads" else check_jobs)(value, f"{where}: {key}")
    if "stage_timeout" in data:
        from edgeport.run.request import parse_stage_timeouts

        parse_stage_timeouts(data["stage_timeout"], f"{where}: stage_timeout")
    protocol_keys = {f.name for f in fields(TimingProtocol)}
    bench = data.pop("bench", {})
    for key in bench:
        if key not in protocol_keys:
            raise UsageError(f"{where}: unknown key {key!r} in [bench]; known: {', '.join(sorted(protocol_keys))}")
    tables = data.pop("target", {})
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise UsageError(f'{where}: target.{name} must be a table ([target."{name}"])')
    if devices:  # a password in a [device.*] table: exit 2 when the config is read
        from edgeport.device.config import check_device_tables

        check_device_tables(devices, where)
    return Config(path=path, values=data, target_tables=tables, protocol=bench, device_tables=devices)
