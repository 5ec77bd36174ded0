"""The TFLite conversion call, shared by the TFLite and TFLite Micro converters (a TFLM model is an int8 .tflite).

Converts the run's frozen graph wrapped as a signature function (or, where the graph does not survive a
GraphDef round trip, the signature function itself), so the .tflite carries a signature with the SavedModel's
input and output names. int8 and int16x8 are calibrated with the run's calibration samples; SELECT_TF_OPS only
with `allow_tf_ops`. An op with no builtin becomes one ConversionError naming every such op.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from edgeport.data import SampleSet
from edgeport.errors import ConversionError, UsageError, first_line
from edgeport.formats.tflite.flatbuffer import operator_output_names, read_model
from edgeport.model.savedmodel import large_model_threshold
from edgeport.report import wording
from edgeport.run.capture import capture_output

if TYPE_CHECKING:  # pragma: no cover
    from edgeport.model.savedmodel import LoadedModel

MAIN_FILE = "model.tflite"
IO_TYPES = ("float", "int8", "int16")
LOST_SIGNATURE_MARKER = "model has 0 Signatures"  # the int8 calibrator's words when the signature is gone
STATIC_SHAPE_MARKERS = ("element_shape to be static", "requires static shape", "TensorListReserve")


@dataclass(frozen=True)
class TFLiteConversion:
    flatbuffer: bytes
    warnings: tuple[str, ...]  # the converter's own output, captured
    notes: tuple[str, ...]  # what the report must say: a fallback taken, a dimension fixed
    fixed_shapes: Mapping[str, tuple[int | None, ...]]  # inputs whose batch was fixed (None: still dynamic)
    float_nodes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # float_layers: TF layer -> the
    # TFLite op outputs kept in float for it (empty: the layer has no op of its own here)


BUFFER_OFFSET_VARIANTS = ("", "fp16", "dynamic")  # no calibration: edgeport's calibration steps rewrite the
# flatbuffer, which would drop buffers stored after it


@dataclass(frozen=True)
class SavedModelSource:
    """Convert from the SavedModel directory with the converter's own loader (`from_saved_model`), for a large
    model: the shared frozen graph holds its weights as constants, and the converter copies those many times
    over (a 0.3 GB model peaked at 17 GB and took 79 s; from the directory 1.8 GB and 9 s)."""

    path: str
    signature_key: str
    tags: tuple[str, ...]


class _Failed(Exception):
    def __init__(self, error: ConversionError, text: str):
        super().__init__(error.message)
        self.error = error
        self.text = text


def convert_to_tflite(
    model: LoadedModel,
    variant: str,
    calibration: SampleSet | None,
    *,
    allow_tf_ops: bool = False,
    io_type: str = "float",
    float_layers: tuple[str, ...] = (),
    keep_standardization_float: bool = False,
    batch_one: bool = False,
) -> TFLiteConversion:
    """Convert the run's model to a .tflite flatbuffer.

    When the converter fails because it needs static shapes (TensorList ops of an LSTM or GRU over a dynamic
    batch), the conversion is retried once with every dynamic batch fixed to 1, and the notes say so. A
    flatbuffer without a signature is a conversion error: its inputs and outputs could not be matched by name.
    `float_layers` (int8 only): TF layers whose ops stay in float (`_quantize_selectively`). `batch_one`: convert
    with every dynamic batch fixed to 1 from the start (a microcontroller runs one sample per call: static shapes
    let the converter fold the shape arithmetic a dynamic batch leaves at run time), said in the notes.
    """
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    validate_io_type(variant, io_type)
    if float_layers and variant != "int8":
        raise ConversionError(f"{_target(variant)}: only int8 keeps chosen layers in float")
    function, owner, notes = _source(model)
    fixed: dict[str, tuple[int | None, ...]] = {}
    if batch_one and not notes:  # the shared frozen graph as it is (no rewrite, no fallback): fix its batch
        function, owner, fixed, notes = _batch_one(model, function, owner)
    if isinstance(function, SavedModelSource) and variant in BUFFER_OFFSET_VARIANTS:
        notes.append(
            "constant buffers written after the flatbuffer (the converter's buffer-offset mode, which LiteRT "
            "reads): no 2 GB FlatBuffers limit, and none of the converter's passes over the whole model in Python "
            "(buffer deduplication, conversion metadata), which copy it"
        )
    if variant == "int8" and io_type == "float" and keep_standardization_float:
        standardization, said_float = _input_standardization(model)
        if standardization:
            float_layers = (*float_layers, *standardization)
            notes.append(said_float)
    said: list[str] = []  # what was done around the calibrator, by the last calibration

    def convert(function, owner) -> tuple[bytes, tuple[str, ...]]:
        return _convert(
            tf,
            function,
            owner,
            variant=variant,
            calibration=calibration,
            allow_tf_ops=allow_tf_ops,
            io_type=io_type,
            calibrate_only=bool(float_layers),
            said=said,
        )

    def convert_or_raise(function, owner) -> tuple[bytes, tuple[str, ...]]:
        try:
            return convert(function, owner)
        except _Failed as failure:
            raise failure.error from None

    flatbuffer: bytes = b""
    warnings: tuple[str, ...] = ()
    try:
        flatbuffer, warnings = convert(function, owner)
        lost_signature = not read_model(flatbuffer).signatureDefs
    except _Failed as failure:
        lost_signature = LOST_SIGNATURE_MARKER in failure.text  # the quantizer's calibration needed it
        if lost_signature and function is model.concrete_function:
            raise failure.error from None
        if not lost_signature:
            if not any(marker in failure.text for marker in STATIC_SHAPE_MARKERS):
                raise failure.error from None
            wrapped, fixed = model.fixed_batch_function()
            if not fixed:
                raise failure.error from None
            flatbuffer, warnings = convert_or_raise(wrapped.function, wrapped.owner)
            shapes = ", ".join(
                f"{name} -> [{', '.join('?' if d is None else str(d) for d in shape)}]" for name, shape in fixed.items()
            )
            notes.append(
                f"fixed the dynamic batch dimension to 1 ({shapes}): the TFLite converter needs static shapes here "
                "(TensorList ops of a recurrent layer); the model takes one sample per call"
            )
    if lost_signature and function is not model.concrete_function:
        flatbuffer, warnings = convert_or_raise(model.concrete_function, model.trackable)
        notes.append(
            "converted from the SavedModel's signature function: the conversion of the shared frozen graph "
            "came out without a signature"
        )
    if not read_model(flatbuffer).signatureDefs:
        raise ConversionError(
            f"{_target(variant)}: the converted model has no signature, so its inputs and outputs cannot be "
            "matched to the SavedModel's by name; re-export the SavedModel with a serving signature"
        )
    notes.extend(said)
    float_nodes: dict[str, tuple[str, ...]] = {}
    if float_layers:
        known = frozenset(node.name for node in model.frozen.graph_def.node)
        flatbuffer, float_nodes = _quantize_selectively(flatbuffer, variant, io_type, float_layers, known)
    return TFLiteConversion(
        flatbuffer=flatbuffer, warnings=warnings, notes=tuple(notes), fixed_shapes=fixed, float_nodes=float_nodes
    )


def _batch_one(model: LoadedModel, function, owner) -> tuple[Any, Any, dict[str, tuple[int | None, ...]], list[str]]:
    """The frozen graph with every dynamic batch fixed to 1, and the note; as it was when no batch is dynamic or
    the graph cannot be fixed (then said)."""
    if not any(spec.shape and spec.shape[0] is None for spec in model.signature.inputs):
        return function, owner, {}, []
    try:
        wrapped, fixed = model.fixed_batch_function()
    except Exception as exc:  # noqa: BLE001 - the dynamic batch stays; the conversion goes on as before
        return function, owner, {}, [f"the dynamic batch could not be fixed to 1 ({type(exc).__name__}): kept"]
    shapes = ", ".join(
        f"{name} -> [{', '.join('?' if d is None else str(d) for d in shape)}]" for name, shape in fixed.items()
    )
    note = (
        f"fixed the dynamic batch dimension to 1 ({shapes}): a microcontroller runs one sample per call, and "
        "static shapes let the converter fold the shape arithmetic (SHAPE, STRIDED_SLICE, PACK) a dynamic batch "
        "leaves to run on the device's CPU"
    )
    return wrapped.function, wrapped.owner, fixed, [note]


def _input_standardization(model: LoadedModel) -> tuple[tuple[str, ...], str]:
    """The graph nodes that standardize a float input per feature (Keras Normalization: Sub, then a divide),
    to keep in float where the features' spreads differ more than DISPARATE_SCALES: quantized, `x - mean` takes
    one int8 scale for every feature, the widest's, and the others vanish (a tabular model with an income and an
    age: cosine 0 against the SavedModel). Features of one scale (an image's channels) stay quantized."""
    from edgeport.model.input_ranges import graph_input_ranges

    if model.large:
        return (), ""
    try:
        frozen = model.frozen
    except Exception:  # noqa: BLE001 - no frozen graph: converted from the signature function, as it is
        return (), ""
    dtypes = {spec.name: spec.dtype for spec in model.signature.inputs}
    ranges = graph_input_ranges(frozen.graph_def, frozen.input_tensors, dtypes)
    kept = {name: found for name, found in ranges.items() if found.standardized_by and _disparate(found.per_feature)}
    nodes = tuple(node for found in kept.values() for node in found.standardized_by)
    if not nodes:
        return (), ""
    note = (
        f"kept the per-feature standardization of {', '.join(kept)} in float ({', '.join(nodes)}): quantized, "
        "the features' different scales would share one int8 scale and the small ones vanish"
    )
    return nodes, note


DISPARATE_SCALES = 4.0  # features whose spreads differ more than this share one int8 scale badly: the
# narrowest keeps fewer than 256 / 4 = 64 levels of the widest's scale


def _disparate(per_feature: tuple[tuple[float, float], ...]) -> bool:
    widths = [high - low for low, high in per_feature]
    return len(widths) > 1 and min(widths) > 0 and max(widths) / min(widths) > DISPARATE_SCALES


def _quantize_selectively(
    calibrated: bytes, variant: str, io_type: str, float_layers: tuple[str, ...], known: frozenset[str]
) -> tuple[bytes, dict[str, tuple[str, ...]]]:
    """Quantize a calibrated float model with the ops of `float_layers` left in float: the converter's MLIR
    quantizer with `denylisted_nodes` (the quantization debugger's selective quantization, without its
    interpreter), given the same arguments `TFLiteConverter.convert` gives it. An op is kept when any TF node
    its output tensor stands for (checks.layers.stands_for: fused ops are `a;b`) is one of the layers."""
    from tensorflow.lite.python import convert as tflite_convert

    from edgeport.checks.layers import stands_for
    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    wanted = set(float_layers)
    nodes: dict[str, list[str]] = {layer: [] for layer in float_layers}
    for tensor in operator_output_names(calibrated):
        for layer in wanted.intersection(stands_for(tensor, known)):
            nodes[layer].append(tensor)
    denylisted = sorted({tensor for tensors in nodes.values() for tensor in tensors})
    io_dtype = {"float": tf.float32, "int8": tf.int8}[io_type]
    with capture_output():
        try:
            flatbuffer = tflite_convert.mlir_quantize(
                calibrated,
                disable_per_channel=False,
                input_data_type=io_dtype,
                output_data_type=io_dtype,
                denylisted_nodes=denylisted,
            )
        except Exception as exc:  # noqa: BLE001 - the quantizer raises several types; all become one line
            raise ConversionError(
                f"{_target(variant)}: quantization with {len(denylisted)} op(s) in float failed: {first_line(exc)}"
            ) from None
    return flatbuffer, {layer: tuple(tensors) for layer, tensors in nodes.items()}


def _convert(
    tf,
    function,
    owner,
    *,
    variant: str,
    calibration: SampleSet | None,
    allow_tf_ops: bool,
    io_type: str,
    calibrate_only: bool = False,
    said: list[str] | None = None,
) -> tuple[bytes, tuple[str, ...]]:
    """One converter call. `calibrate_only`: the float model with calibration statistics, quantized later
    (`_quantize_selectively`). `said`: gets what was done around the calibrator, for the report."""
    if isinstance(function, SavedModelSource):
        converter = tf.lite.TFLiteConverter.from_saved_model(
            function.path, signature_keys=[function.signature_key], tags=set(function.tags)
        )
        if variant in BUFFER_OFFSET_VARIANTS:
            converter._experimental_use_buffer_offset = True  # noqa: SLF001 - the converter's large-model mode
            converter.exclude_conversion_metadata = True
    else:
        converter = tf.lite.TFLiteConverter.from_concrete_functions([function], owner)
    ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    if variant in ("dynamic", "fp16", "int8", "int16x8"):
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == "fp16":
        converter.target_spec.supported_types = [tf.float16]
    if variant in ("int8", "int16x8"):
        if calibration is None or calibration.count == 0:
            raise ConversionError(f"tflite:{variant} needs calibration samples; pass --data or --calibration")
        converter.representative_dataset = _representative_dataset(calibration)
        _calibrate_around_the_calibrator(tf, converter, calibration, said if said is not None else [])
        ops = [
            tf.lite.OpsSet.TFLITE_BUILTINS_INT8
            if variant == "int8"
            else tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        ]
        if io_type != "float":
            io_dtype = {"int8": tf.int8, "int16": tf.int16}[io_type]
            converter.inference_input_type = io_dtype
            converter.inference_output_type = io_dtype
    if allow_tf_ops:
        ops.append(tf.lite.OpsSet.SELECT_TF_OPS)
    converter.target_spec.supported_ops = ops
    if calibrate_only:
        converter._experimental_calibrate_only = True  # noqa: SLF001 - the quantization debugger's own switch
    with capture_output() as captured:
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # noqa: BLE001 - the converter raises several types; all become one line
            failure = exc
        else:
            return flatbuffer, captured.warnings()
    text = "\n".join([str(failure), *captured.lines])
    raise _Failed(_conversion_error(variant, failure, captured.lines, allow_tf_ops=allow_tf_ops), text)


def convert_function(function, owner, variant: str, *, allow_tf_ops: bool) -> tuple[bytes, tuple[str, ...]]:
    """One converter call on a signature function, for a float variant ("", fp16, dynamic): (flatbuffer, warnings);
    a failure is the one-line ConversionError of any conversion."""
    from edgeport.model.tf_quiet import import_tensorflow

    try:
        return _convert(
            import_tensorflow(), function, owner, variant=variant, calibration=None, allow_tf_ops=allow_tf_ops,
            io_type="float",
        )  # fmt: skip
    except _Failed as failure:
        raise failure.error from None


def _calibrate_around_the_calibrator(tf, converter, calibration: SampleSet, said: list[str]) -> None:
    """On this converter only, between its float model and its calibration: copy WHILE bodies' pass-through
    loop variables (formats.tflite.while_passthrough: the calibrator crashes on them), and calibrate a model
    with string inputs on LiteRT instead (formats.tflite.calibration: the calibrator cannot feed strings).
    `said` gets, per calibration, what was done, for the report."""
    from edgeport.formats.tflite.calibration import calibrable_here, calibrate_on_litert, has_string_inputs
    from edgeport.formats.tflite.while_passthrough import without_while_passthrough

    quantize = getattr(converter, "_quantize", None)  # the one step between the float model and its calibration
    if quantize is None:  # a converter without it calibrates as it is
        return

    def calibrate_and_quantize(
        result, input_type, output_type, activations_type, bias_type, allow_float, variable_quantization, debug
    ):
        patched, copied = without_while_passthrough(result)
        done = []
        if copied:
            done.append(
                f"{copied} loop variable(s) that a WHILE body passes through unchanged were copied for calibration "
                "(the converter's calibrator crashes on them: tensorflow/tensorflow#75140)"
            )
        strings = has_string_inputs(patched)
        if not strings or activations_type == tf.int16 or not calibrable_here(patched):
            if strings:
                done.append(
                    "the string inputs could not be calibrated on LiteRT (int16x8, or control flow), and the "
                    "converter's calibrator cannot feed strings: its ranges downstream of them are not measured"
                )
            said[:] = done
            return quantize(
                patched, input_type, output_type, activations_type, bias_type, allow_float, variable_quantization, debug
            )
        said[:] = [
            *done,
            "calibrated on LiteRT's interpreter (each float tensor's min and max over the calibration samples): "
            "the converter's calibrator cannot feed string inputs",
        ]
        calibrated = calibrate_on_litert(patched, calibration.feeds())
        dense_per_tensor = converter._experimental_disable_per_channel_quantization_for_dense_layers  # noqa: SLF001
        if converter._experimental_calibrate_only:  # noqa: SLF001 - float_layers quantizes it later
            return calibrated
        from tensorflow.lite.python import convert as tflite_convert

        return tflite_convert.mlir_quantize(
            calibrated,
            converter._experimental_disable_per_channel,  # noqa: SLF001 - as TFLiteConverter passes them
            input_data_type=input_type,
            output_data_type=output_type,
            enable_variable_quantization=variable_quantization,
            disable_per_channel_for_dense_layers=dense_per_tensor,
            debug_options_str=debug.SerializeToString(),
        )

    converter._quantize = calibrate_and_quantize  # noqa: SLF001


def _source(model: LoadedModel) -> tuple[Any, Any, list[str]]:
    """(function, its owner, notes): the run's frozen graph as a signature function (variables already
    constants: 3-4x faster than converting from the variables), else the signature function itself, said; a
    large model (LoadedModel.large): the SavedModel directory (SavedModelSource), said.

    A graph that reads lookup tables gets them as tensor ops (edgeport.model.lookup_tables): TFLite's hash
    table kernels take only tables the converter can fill from constants, never from a vocabulary file.
    """
    if model.mode == "tf2" and model.large:
        note = (
            "converted from the SavedModel directory by the converter's own loader: its "
            f"{wording.size(model.weights_bytes())} of weights reach the large-model threshold "
            f"({wording.size(large_model_threshold())}), past which the shared "
            "frozen graph's constants cost the converter many copies of them"
        )
        return SavedModelSource(str(model.path), model.signature.key, tuple(model.tags)), None, [note]
    try:
        tables = _lookups_as_ops(model) or _pools_as_2d(model)
        if tables is not None:
            return tables
        frozen = model.frozen_function
    except Exception as exc:  # noqa: BLE001 - any failure to wrap the frozen graph: convert from the variables
        note = (
            "converted from the SavedModel's signature function, not the shared frozen graph, which could not be "
            f"wrapped ({type(exc).__name__}: {first_line(exc, 200)})"
        )
        return model.concrete_function, model.trackable, [note]
    return frozen.function, frozen.owner, []


def _pools_as_2d(model: LoadedModel) -> tuple[Any, Any, list[str]] | None:
    """MaxPool3D / AvgPool3D as 2-D pools over merged axes (edgeport.model.graph_rewrites.lower_pool3d):
    TFLite has no 3-D pooling builtin. A pool it cannot lower stays, and the converter names it."""
    from edgeport.model.graph_rewrites import POOL3D, count_ops, lower_pool3d
    from edgeport.model.savedmodel import FrozenGraph, wrap_frozen_graph

    if not any(count_ops(model.frozen.graph_def, op) for op in POOL3D):
        return None
    graph_def = type(model.frozen.graph_def)()
    graph_def.CopyFrom(model.frozen.graph_def)
    lowered, refused = lower_pool3d(graph_def)
    if not lowered:
        return None
    frozen = wrap_frozen_graph(
        FrozenGraph(graph_def, model.frozen.input_tensors, model.frozen.output_tensors), model.signature
    )
    note = f"{lowered} 3-D pooling op(s) written as two 2-D pools each (TFLite has no 3-D pooling builtin)"
    return frozen.function, frozen.owner, [note, *(f"not lowered: {why}" for why in refused)]


def _lookups_as_ops(model: LoadedModel) -> tuple[Any, Any, list[str]] | None:
    from edgeport.model.lookup_tables import lower_lookups, table_placeholders
    from edgeport.model.savedmodel import FrozenGraph, wrap_frozen_graph

    if not table_placeholders(model.frozen.graph_def):
        return None
    contents = model.tables
    graph_def = type(model.frozen.graph_def)()
    graph_def.CopyFrom(model.frozen.graph_def)
    lowered = lower_lookups(graph_def, contents)
    if not lowered or table_placeholders(graph_def):
        return None
    frozen = wrap_frozen_graph(
        FrozenGraph(graph_def, model.frozen.input_tensors, model.frozen.output_tensors), model.signature
    )
    keys = sum(len(table.keys) for table in contents.values())
    note = (
        f"{len(contents)} lookup table(s) ({keys} keys) converted as tensor ops (compare, select), not TFLite hash "
        "tables, which the converter cannot fill from every initializer (a vocabulary file)"
    )
    return frozen.function, frozen.owner, [note]


def _target(variant: str) -> str:
    return f"tflite:{variant}" if variant else "tflite"


def validate_io_type(variant: str, io_type: str) -> None:
    if io_type not in IO_TYPES:
        raise UsageError(f"--io-type {io_type!r}: use one of {', '.join(IO_TYPES)}")
    allowed = {"int8": ("float", "int8"), "int16x8": ("float", "int16")}.get(variant, ("float",))
    if io_type not in allowed:  # float variants have float I/O only
        raise UsageError(
            f"--io-type {io_type} does not apply to tflite{':' + variant if variant else ''}; "
            f"it takes {' or '.join(allowed)}"
        )


def _representative_dataset(calibration: SampleSet):
    def generate():
        for feed in calibration.feeds():
            yield dict(feed)

    return generate


_OP_PATTERNS = (
    re.compile(r"'tf\.(\w+)' op is neither a custom op nor a flex op"),
    re.compile(r"\btf\.(\w+)\(.*?\)\s*->"),
    re.compile(r"'tf\.(\w+)' op"),
)


def _conversion_error(variant: str, exc: Exception, log_lines: list[str], *, allow_tf_ops: bool) -> ConversionError:
    text = "\n".join([str(exc), *log_lines])
    ops = sorted({m.group(1) for pattern in _OP_PATTERNS[:2] for m in pattern.finditer(text)})
    target = f"tflite:{variant}" if variant else "tflite"
    if ops and not allow_tf_ops:
        return ConversionError(
            f"{target}: ops with no TFLite builtin: {', '.join(ops)}; pass --allow-tf-ops to "
            "use TensorFlow kernels (SELECT_TF_OPS, needs the Flex delegate on the device)"
        )
    if ops:
        return ConversionError(f"{target}: conversion failed at ops {', '.join(ops)} even with SELECT_TF_OPS")
    return ConversionError(f"{target}: conversion failed: {first_line(exc)}")
