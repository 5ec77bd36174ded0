"""C/C++ sources for a firmware project: the model as an aligned byte array, and an op resolver.

`model_data.cc` / `model_data.h` hold the .tflite as `alignas(16) const unsigned char <name>[]` with its
length; `op_resolver.h` registers exactly the model's ops on a `tflite::MicroMutableOpResolver<N>`, with the
`Add...()` method names of TFLite Micro's micro_mutable_op_resolver.h. Independent of edgeport.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CPP_KEYWORDS = frozenset(
    [
        "alignas",
        "alignof",
        "and",
        "and_eq",
        "asm",
        "auto",
        "bitand",
        "bitor",
        "bool",
        "break",
        "case",
        "catch",
        "char",
        "char8_t",
        "char16_t",
        "char32_t",
        "class",
        "compl",
        "concept",
        "const",
        "consteval",
        "constexpr",
        "constinit",
        "const_cast",
        "continue",
        "co_await",
        "co_return",
        "co_yield",
        "decltype",
        "default",
        "delete",
        "do",
        "double",
        "dynamic_cast",
        "else",
        "enum",
        "explicit",
        "export",
        "extern",
        "false",
        "float",
        "for",
        "friend",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "mutable",
        "namespace",
        "new",
        "noexcept",
        "not",
        "not_eq",
        "nullptr",
        "operator",
        "or",
        "or_eq",
        "private",
        "protected",
        "public",
        "register",
        "reinterpret_cast",
        "requires",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "static_assert",
        "static_cast",
        "struct",
        "switch",
        "template",
        "this",
        "thread_local",
        "throw",
        "true",
        "try",
        "typedef",
        "typeid",
        "typename",
        "union",
        "unsigned",
        "using",
        "virtual",
        "void",
        "volatile",
        "wchar_t",
        "while",
        "xor",
        "xor_eq",
    ]
)
# Builtin names whose resolver method does not follow the word-by-word rule of micro_mutable_op_resolver.h.
_METHOD_EXCEPTIONS = {
    "CUMSUM": "AddCumSum",
    "PADV2": "AddPadV2",
    "BATCH_MATMUL": "AddBatchMatMul",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
}
# Custom ops TFLite Micro registers under a custom name, and the method that adds each.
CUSTOM_METHODS = {
    "TFLite_Detection_PostProcess": "AddDetectionPostprocess",
    "CIRCULAR_BUFFER": "AddCircularBuffer",
    "ethos-u": "AddEthosU",  # Vela's NPU subgraphs (tflm:ethos-u*)
}
BYTES_PER_LINE = 12


def c_identifier_problem(name: str) -> str | None:
    """Why `name` cannot name a C/C++ array, or None when it can."""
    if not _IDENTIFIER.match(name):
        return "use letters, digits and underscores, not starting with a digit"
    if name in _CPP_KEYWORDS:
        return "it is a C++ keyword"
    if name.startswith("__") or re.match(r"^_[A-Z]", name):
        return "names starting with __ or _ and a capital are reserved"
    return None


def resolver_method(op_name: str, *, custom: bool = False) -> str:
    """`CONV_2D` -> `AddConv2D`, `BATCH_TO_SPACE_ND` -> `AddBatchToSpaceNd`, `RELU6` -> `AddRelu6`."""
    if custom:
        if op_name.startswith("Signal"):  # the signal library's ops: SignalWindow -> AddWindow
            return "Add" + op_name.removeprefix("Signal")
        if op_name not in CUSTOM_METHODS:
            raise KeyError(f"no MicroMutableOpResolver method for custom op {op_name!r}")
        return CUSTOM_METHODS[op_name]
    if op_name in _METHOD_EXCEPTIONS:
        return _METHOD_EXCEPTIONS[op_name]
    words = [word if re.fullmatch(r"\d+D", word) else word.capitalize() for word in op_name.split("_")]
    return "Add" + "".join(words)


def _guard(c_name: str, file: str) -> str:
    return f"EDGEPORT_{c_name.upper()}_{file.upper()}_H_"


def model_data_h(
    *, c_name: str, size: int, arena_bytes: int | None, source: str, vela_sram_bytes: int | None = None
) -> str:
    """`vela_sram_bytes`: the array is Vela's model (an Ethos-U variant), whose arena nobody measured here: the
    header gives Vela's SRAM estimate and the host arena of the int8 model before Vela, each said for what it is,
    and no `_arena_size` that would pass one of them off as this model's."""
    arena = ""
    if vela_sram_bytes is not None:
        arena = (
            f"// This model is Vela's; its tensor arena was not measured. Vela estimated that it uses\n"
            f"// {vela_sram_bytes} bytes of SRAM (an estimate, not a measurement); the int8 model before Vela\n"
            f"// allocated and ran in {arena_bytes} bytes on TFLite Micro's reference kernels on the host (64-bit\n"
            f"// build). Size the arena on the device from both and leave a margin.\n"
            f"constexpr unsigned int {c_name}_vela_sram_estimated = {vela_sram_bytes};\n"
            f"constexpr unsigned int {c_name}_int8_host_arena_size = {arena_bytes};\n\n"
        )
    elif arena_bytes is not None:
        arena = (
            f"// Smallest tensor arena with which TFLite Micro's reference kernels allocated and ran this model\n"
            f"// on the host (64-bit build). Check it on the device and leave a margin.\n"
            f"constexpr unsigned int {c_name}_arena_size = {arena_bytes};\n\n"
        )
    guard = _guard(c_name, "model_data")
    return (
        f"// Generated by edgeport from {source}: the model for TensorFlow Lite for Microcontrollers.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f"// The .tflite flatbuffer ({size} bytes), 16-byte aligned as TFLite Micro expects.\n"
        f"extern const unsigned char {c_name}[];\n"
        f"extern const unsigned int {c_name}_len;\n\n"
        f"{arena}"
        f"#endif  // {guard}\n"
    )


def model_data_cc(*, c_name: str, data: bytes, header: str = "model_data.h") -> str:
    rows = []
    for start in range(0, len(data), BYTES_PER_LINE):
        chunk = data[start : start + BYTES_PER_LINE]
        rows.append("    " + ", ".join(f"0x{byte:02x}" for byte in chunk) + ",")
    body = "\n".join(rows)
    return (
        f"// Generated by edgeport: do not edit; re-run the conversion instead.\n"
        f'#include "{header}"\n\n'
        f"alignas(16) const unsigned char {c_name}[] = {{\n{body}\n}};\n\n"
        f"const unsigned int {c_name}_len = {len(data)};\n"
    )


def op_resolver_h(*, c_name: str, ops: Iterable[tuple[str, bool]]) -> str:
    """`ops`: (name, custom) per distinct operator of the model, in first-use order."""
    methods = [resolver_method(name, custom=custom) for name, custom in ops]
    methods = list(dict.fromkeys(methods))
    count = len(methods)
    guard = _guard(c_name, "op_resolver")
    adds = "\n".join(f"  if (resolver.{method}() != kTfLiteOk) return kTfLiteError;" for method in methods)
    return (
        f"// Generated by edgeport: registers exactly the ops {c_name} uses ({count}), no AllOpsResolver.\n"
        f"#ifndef {guard}\n#define {guard}\n\n"
        f'#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"constexpr unsigned int {c_name}_op_count = {count};\n"
        f"using {c_name}_op_resolver = tflite::MicroMutableOpResolver<{c_name}_op_count>;\n\n"
        f"// Usage: static {c_name}_op_resolver resolver; {c_name}_register_ops(resolver);\n"
        f"inline TfLiteStatus {c_name}_register_ops({c_name}_op_resolver& resolver) {{\n"
        f"{adds}\n"
        f"  return kTfLiteOk;\n"
        f"}}\n\n"
        f"#endif  // {guard}\n"
    )
