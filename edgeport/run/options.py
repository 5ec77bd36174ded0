"""Plug-in options: a plug-in's frozen `Options` dataclass is its schema. Unknown keys name themselves."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from typing import Any

from edgeport.errors import UsageError

_SIZE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmg]?i?b?)?\s*$", re.IGNORECASE)
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kb": 1024,
    "kib": 1024,
    "m": 1024**2,
    "mb": 1024**2,
    "mib": 1024**2,
    "g": 1024**3,
    "gb": 1024**3,
    "gib": 1024**3,
}


def parse_size(value: Any, where: str) -> int:
    """'256KB', '1MB', '65536' -> bytes (binary units, as device datasheets use them)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _SIZE.match(str(value))
    if not match or match.group(2) is not None and match.group(2).lower() not in _UNITS:
        raise UsageError(f"{where}: {value!r} is not a size; use e.g. 65536, 256KB or 1MB")
    return int(float(match.group(1)) * _UNITS[(match.group(2) or "").lower()])


def option_names(options_type: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options_type))


def _coerce(value: Any, field: dataclasses.Field, where: str) -> Any:
    annotation = str(field.type)
    name = f"{where} {field.name}"
    if annotation.startswith("bool"):
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower()
        if text in ("1", "true", "yes", "on"):
            return True
        if text in ("0", "false", "no", "off"):
            return False
        raise UsageError(f"{name}: {value!r} is not true or false")
    if value is None:
        return None
    if annotation.startswith("tuple"):
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(str(item).strip() for item in items if str(item).strip())
    if annotation.startswith("int"):
        if field.name.endswith("_bytes") or field.name.endswith("_limit"):
            return parse_size(value, name)
        try:
            return int(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name}: {value!r} is not an integer") from None
    if annotation.startswith("float"):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise UsageError(f"{name}: {value!r} is not a number") from None
    text = value if isinstance(value, str) else str(value)
    choices = field.metadata.get("edgeport", {}).get("choices", ())
    if choices and text not in choices:  # `-O KEY=VALUE` and config keys; the flags are checked by click
        raise UsageError(f"{name}: {text!r} is not one of {', '.join(choices)}")
    return text


def build_options(options_type: type, values: Mapping[str, Any], where: str):
    """Instantiate a plug-in's Options from user values; an unknown key is a usage error naming it."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        known = ", ".join(fields) or "(none)"
        raise UsageError(f"{where}: unknown option {unknown[0]!r}; options here: {known}")
    return options_type(**{key: _coerce(value, fields[key], where) for key, value in values.items()})
