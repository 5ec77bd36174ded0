"""Which ONNX opsets this machine can produce and run, and which TF ops tf2onnx can map at an opset.

The default opset is the highest one both tf2onnx (its opset -> IR version table) and the installed
onnxruntime (its operator schema registry) know; nothing is hard-coded. The handler registry answers, per
TF op, the lowest ONNX opset whose handler maps it and whether a custom-domain handler exists
(com.microsoft contrib ops, ai.onnx.contrib ops from onnxruntime-extensions), for preflight and for errors.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass

from edgeport.errors import UsageError

ONNX_DOMAINS = ("", "ai.onnx")
ML_DOMAIN = "ai.onnx.ml"  # standard ONNX-ML operators (CategoryMapper for lookup tables), which onnxruntime runs
CUSTOM_DOMAINS = ("com.microsoft", "ai.onnx.contrib")  # handlers tf2onnx has outside the ONNX domain
MIN_OPSET = 7  # onnxruntime loads opset 7 and newer
STRUCTURAL_OPS = frozenset({"Placeholder", "PlaceholderWithDefault", "Const", "Identity", "NoOp"})


@dataclass(frozen=True)
class OpSupport:
    """How tf2onnx maps one TF op: lowest ONNX opset with a handler, and custom domains with one."""

    op: str
    min_opset: int | None  # None: no handler in the ONNX domain at any opset
    custom_domains: tuple[str, ...]

    def advice(self, opset: int, max_opset: int) -> str:
        """What would help, for an op that did not convert at `opset`."""
        hints = []
        if self.min_opset is not None and self.min_opset <= opset:
            hints.append(
                f"tf2onnx has a handler from opset {self.min_opset} but it failed on this graph; "
                "see the conversion warnings"
            )
        if self.min_opset is not None and self.min_opset > opset:
            if self.min_opset <= max_opset:
                hints.append(f"opset {self.min_opset}+ would map it (pass opset={self.min_opset})")
            else:
                hints.append(f"needs opset {self.min_opset}, above the {max_opset} this machine supports")
        if self.custom_domains:
            hints.append(f"allow_custom_ops would map it ({', '.join(self.custom_domains)})")
        if not hints:
            return f"{self.op} (no tf2onnx handler at any opset, nor as a custom op)"
        return f"{self.op} ({'; '.join(hints)})"


def tf2onnx_max_opset() -> int:
    from tf2onnx import constants

    return max(constants.OPSET_TO_IR_VERSION)


@functools.cache
def onnxruntime_max_opset() -> int:
    """The newest ai.onnx opset in onnxruntime's own operator schema registry (what it accepts to load)."""
    from onnxruntime.capi import _pybind_state

    return max(
        schema.since_version for schema in _pybind_state.get_all_operator_schema() if schema.domain in ONNX_DOMAINS
    )


def onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def highest_common_opset() -> int:
    return min(tf2onnx_max_opset(), onnxruntime_max_opset())


def resolve_opset(requested: int | None) -> int:
    """The opset to convert at: the requested one once validated, or the highest common one."""
    if requested is None:
        return highest_common_opset()
    if isinstance(requested, bool) or not isinstance(requested, int):
        raise UsageError(f"onnx option opset={requested!r} is not an integer; pass e.g. opset={highest_common_opset()}")
    ort_max = onnxruntime_max_opset()
    if requested > ort_max:
        raise UsageError(
            f"onnx option opset={requested} is above what onnxruntime {onnxruntime_version()} runs "
            f"(up to opset {ort_max}); pass opset={highest_common_opset()} or leave it unset"
        )
    tf2onnx_max = tf2onnx_max_opset()
    if requested > tf2onnx_max:
        raise UsageError(
            f"onnx option opset={requested} is above what tf2onnx converts to (up to opset "
            f"{tf2onnx_max}); pass opset={highest_common_opset()} or leave it unset"
        )
    if requested < MIN_OPSET:
        raise UsageError(
            f"onnx option opset={requested} is below the oldest opset onnxruntime loads ({MIN_OPSET}); "
            f"pass opset={highest_common_opset()} or leave it unset"
        )
    return requested


def _handler_registry() -> dict:
    from tf2onnx import handler, tfonnx  # noqa: F401 - importing tfonnx registers every handler

    return handler.tf_op.get_opsets()


def op_support(op: str) -> OpSupport:
    registry = _handler_registry()
    onnx_versions = [version for version, ops in enumerate(registry.get("", [])) if op in ops]
    custom = tuple(domain for domain in CUSTOM_DOMAINS if any(op in ops for ops in registry.get(domain, [])))
    return OpSupport(op=op, min_opset=min(onnx_versions) if onnx_versions else None, custom_domains=custom)


def unmapped_ops(ops: Iterable[str], opset: int, allow_custom_ops: bool) -> list[OpSupport]:
    """The ops with no tf2onnx handler at `opset` (custom domains count when allowed), sorted by name."""
    missing = []
    for op in sorted(set(ops) - STRUCTURAL_OPS):
        support = op_support(op)
        if support.min_opset is not None and support.min_opset <= opset:
            continue
        if allow_custom_ops and support.custom_domains:
            continue
        missing.append(support)
    return missing
