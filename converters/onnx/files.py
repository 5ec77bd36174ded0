"""Write the artifact's files: the .onnx, its external weights, the optional .ort; then check the .onnx.

onnxruntime optimizes the graph once here at its "basic" level (constant folding, redundant nodes removed,
Conv+BatchNorm/Add/Mul folded): standard ONNX ops only. Its "extended" level (`ort_optimized`) fuses into
com.microsoft contrib ops (FusedConv, FusedGemm, QLinearSoftmax, DynamicQuantizeMatMul) that only ONNX
Runtime loads; never the layout level, whose NCHWc rewrite is specific to this machine's CPU. onnxruntime
imports all its own domains (com.microsoft.nchwc, org.pytorch.aten, ai.onnx.training...) into what it writes:
`finish_standard` drops the imports no node uses and fails the conversion unless the file is standard ONNX
(`formats.onnx.conventions.STANDARD_DOMAINS`) that `onnx.checker.check_model(full_check=True)` accepts.
Past the external-data threshold, weights go to `model.onnx.data` beside the model (ONNX's external data
format; protobuf caps a single file at 2 GB).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgeport.errors import ConversionError, first_line
from edgeport.run.capture import capture_output

MAIN_FILE = "model.onnx"
EXTERNAL_DATA_FILE = "model.onnx.data"
ORT_FILE = "model.ort"
OPTIMIZATION_LEVELS = ("none", "basic")  # standard ONNX; ort_optimized writes the "extended" level
ORT_OPTIMIZED_LEVEL = "extended"
EXTERNAL_MIN_TENSOR_BYTES = 1024  # smaller tensors stay inside the .onnx


@dataclass(frozen=True)
class WrittenFiles:
    main_file: str
    files: tuple[str, ...]
    ort_file: str | None
    external_data_file: str | None
    warnings: tuple[str, ...]


def weights_bytes(model) -> int:
    """Bytes of the model's initializers (what moves to the external data file)."""
    import numpy as np
    from onnx import helper

    total = 0
    for tensor in model.graph.initializer:
        count = int(np.prod(tensor.dims)) if len(tensor.dims) else 1
        total += count * np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return total


def write_model(model, path: Path, *, external_data: bool) -> None:
    import onnx

    onnx.save_model(
        model,
        str(path),
        save_as_external_data=external_data,
        all_tensors_to_one_file=True,
        location=f"{path.name}.data",
        size_threshold=EXTERNAL_MIN_TENSOR_BYTES,
    )


def simplify_for_runtime(model, *, staging: Path, external_data: bool, target: str):
    """onnxruntime's basic level (constant folding, transposes pushed through) then edgeport's rewrites.

    Runs on the float32 graph, before fp16 or int8: the result is plain ONNX that either step takes.
    Returns (model, number of GlobalAveragePool rewrites, warnings).
    """
    from edgeport.converters.onnx.rewrite import spatial_means_to_global_pool

    source, basic = staging / "exported.onnx", staging / "basic.onnx"
    write_model(model, source, external_data=external_data)
    warnings = _optimize(source, basic, level="basic", external_data=external_data, ort_format=False, target=target)
    model = _load(basic)
    return model, spatial_means_to_global_pool(model), warnings


def write_for_runtime(
    model, *, workdir: Path, staging: Path, level: str, external_data: bool, ort_format: bool, target: str
) -> WrittenFiles:
    """Optimize with onnxruntime at `level` and write model.onnx (+ .data, + .ort) into workdir."""
    main = workdir / MAIN_FILE
    warnings: list[str] = []
    if level == "none":
        write_model(model, main, external_data=external_data)
    else:
        source = staging / "unoptimized.onnx"
        write_model(model, source, external_data=external_data)
        warnings += _optimize(source, main, level=level, external_data=external_data, ort_format=False, target=target)
    ort_file = None
    if ort_format:
        warnings += _optimize(
            main, workdir / ORT_FILE, level=level, external_data=False, ort_format=True, target=target
        )
        ort_file = ORT_FILE
    external = EXTERNAL_DATA_FILE if external_data and (workdir / EXTERNAL_DATA_FILE).is_file() else None
    files = tuple(name for name in (MAIN_FILE, external, ort_file) if name)
    return WrittenFiles(
        main_file=MAIN_FILE, files=files, ort_file=ort_file, external_data_file=external, warnings=tuple(warnings)
    )


def write_by_reference(model, references, *, workdir: Path, ort_format: bool, target: str) -> WrittenFiles:
    """A large model's weights streamed from its variables into model.onnx.data (weight_binding), then
    model.onnx: neither ModelProto nor GraphDef ever holds them. No offline optimization: onnxruntime would
    load every weight into this process for it; sessions optimize when they start."""
    from edgeport.converters.onnx.weight_binding import bind_weights

    main = workdir / MAIN_FILE
    bind_weights(model, references, data_file=workdir / EXTERNAL_DATA_FILE)
    write_model(model, main, external_data=False)  # the initializers already point into the data file
    warnings: tuple[str, ...] = ()
    ort_file = None
    if ort_format:
        warnings = _optimize(
            main, workdir / ORT_FILE, level="basic", external_data=False, ort_format=True, target=target
        )
        ort_file = ORT_FILE
    files = tuple(name for name in (MAIN_FILE, EXTERNAL_DATA_FILE, ort_file) if name)
    return WrittenFiles(
        main_file=MAIN_FILE, files=files, ort_file=ort_file, external_data_file=EXTERNAL_DATA_FILE, warnings=warnings
    )


def finish_standard(path: Path, *, allowed_domains: tuple[str, ...], target: str) -> Counter[str]:
    """Make `path` standard ONNX or fail: drop the opset imports no node uses (onnxruntime imports all of its
    domains into what it writes), refuse nodes or imports outside the standard domains (`allowed_domains`:
    the custom ones `allow_custom_ops` asked for), then `onnx.checker.check_model(full_check=True)` on the
    file (by path: external data and models past 2 GB included). Returns the custom-domain ops left."""
    import onnx

    from edgeport.formats.onnx.conventions import STANDARD_DOMAINS, domain_ops, used_domains

    model = onnx.load(str(path), load_external_data=False)
    used = used_domains(model) | {""}
    unused = [o for o in model.opset_import if o.domain not in used and o.domain != "ai.onnx"]
    if unused:
        kept = [o for o in model.opset_import if o.domain in used or o.domain == "ai.onnx"]
        del model.opset_import[:]
        model.opset_import.extend(kept)
        path.write_bytes(model.SerializeToString())  # the initializers' external data references are unchanged
    allowed = STANDARD_DOMAINS | set(allowed_domains)
    ops = domain_ops(model)
    outside = {op: n for op, n in ops.items() if op.rsplit(".", 1)[0] not in allowed}
    imports = sorted({o.domain for o in model.opset_import} - allowed)
    if outside or imports:
        said = ", ".join(f"{op} x{n}" for op, n in sorted(outside.items())) or f"imports {', '.join(imports)}"
        raise ConversionError(
            f"{target}: {path.name} is not standard ONNX ({said}); please report it, or pass ort_optimized=true "
            "for an ONNX Runtime-only file"
        )
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:  # noqa: BLE001 - onnx raises ValidationError, InferenceError...
        raise ConversionError(
            f"{target}: {path.name} fails onnx.checker.check_model(full_check=True): {first_line(exc)}"
        ) from None
    return ops


def ort_only_ops(path: Path) -> Counter[str]:
    """The ops outside the standard domains in `path` (an ORT-optimized file's com.microsoft fusions)."""
    import onnx

    from edgeport.formats.onnx.conventions import domain_ops

    return domain_ops(onnx.load(str(path), load_external_data=False))


def _load(path: Path):
    import onnx

    return onnx.load(str(path))


def _optimize(
    source: Path, output: Path, *, level: str, external_data: bool, ort_format: bool, target: str
) -> tuple[str, ...]:
    import onnxruntime as ort

    from edgeport.formats.onnx.conventions import register_custom_ops

    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    }[level]
    options.optimized_model_filepath = str(output)
    options.log_severity_level = 3
    if external_data:
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_file_name", f"{output.name}.data"
        )
        options.add_session_config_entry(
            "session.optimized_model_external_initializers_min_size_in_bytes", str(EXTERNAL_MIN_TENSOR_BYTES)
        )
    if ort_format:
        options.add_session_config_entry("session.save_model_format", "ORT")
    register_custom_ops(options)
    with capture_output() as captured:
        try:
            ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph/... types
            kind = "ORT format" if ort_format else f"{level}-level optimized"
            raise ConversionError(
                f"{target}: onnxruntime could not write the {kind} model {output.name}: {first_line(exc)}"
            ) from None
    if not output.is_file():
        raise ConversionError(f"{target}: onnxruntime did not write {output}; check the disk and the folder")
    return captured.warnings()
