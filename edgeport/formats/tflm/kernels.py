"""Which operators the installed tflite-micro package has kernels for, found by asking its interpreter.

No hand-typed list: for each builtin code of the schema, a two-operator model is built (the op under test,
then a custom op no resolver has) and handed to the TFLM Python interpreter. Op resolution runs over every
node before any kernel is initialised, so the interpreter reports either "Didn't find op for builtin
opcode '<OP>'" (no kernel) or fails on the sentinel (the op resolved). Nothing is ever prepared or run.
Independent of edgeport.
"""

from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from functools import cache

SENTINEL = "edgeport_probe_sentinel"
_MISSING_BUILTIN = re.compile(r"Didn't find op for builtin opcode '(\w+)'")
_MISSING_CUSTOM = re.compile(r"registration from op code CUSTOM|Didn't find op for custom opcode")


def _schema():
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def builtin_codes() -> dict[str, int]:
    schema = _schema()
    return {name: code for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}


def _operator_code(schema, *, builtin: int, custom: str | None = None):
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.customCode = custom.encode() if custom else None
    code.version = 1
    return code


def probe_model(*, builtin: int, custom: str | None = None) -> bytes:
    """A model whose first node uses the op under test and whose second node uses an op no resolver has.

    The second op is a custom op named SENTINEL when a builtin is probed, and a builtin code past the
    schema's last one when a custom op is probed (TFLM's message for a missing custom op names no op).
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT()
    model.version = 3
    sentinel = (
        _operator_code(schema, builtin=max(builtin_codes().values()) + 1)
        if custom
        else _operator_code(schema, builtin=schema.BuiltinOperator.CUSTOM, custom=SENTINEL)
    )
    model.operatorCodes = [_operator_code(schema, builtin=builtin, custom=custom), sentinel]
    tensors = []
    for index in range(2):
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer, tensor.name = [1], schema.TensorType.FLOAT32, 0, f"t{index}".encode()
        tensors.append(tensor)
    operators = []
    for opcode_index in range(2):
        operator = schema.OperatorT()
        operator.opcodeIndex, operator.inputs, operator.outputs = opcode_index, [0], [1]
        operators.append(operator)
    if builtin == schema.BuiltinOperator.VAR_HANDLE:  # the Python wrapper reads its options before loading
        operators[0].builtinOptionsType = schema.BuiltinOptions.VarHandleOptions
        operators[0].builtinOptions = schema.VarHandleOptionsT()
    subgraph = schema.SubGraphT()
    subgraph.tensors, subgraph.inputs, subgraph.outputs, subgraph.operators = tensors, [0], [1], operators
    model.subgraphs = [subgraph]
    model.buffers = [schema.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@contextmanager
def _native_output():
    """Collect what native code prints on fds 1 and 2 (TFLM's MicroPrintf) into a list of lines."""
    lines: list[str] = []
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as sink:
        try:
            for fd in (1, 2):
                os.dup2(sink.fileno(), fd)
            yield lines
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            lines.extend(sink.read().decode("utf-8", "replace").splitlines())


def _probe_lines(model: bytes) -> list[str]:
    from tflite_micro.python.tflite_micro import runtime

    with _native_output() as lines:
        try:
            runtime.Interpreter.from_bytes(model, arena_size=16384)
        except RuntimeError:
            pass
    return lines


def _first_op_resolves(model: bytes, *, missing: re.Pattern) -> bool:
    lines = _probe_lines(model)
    text = "\n".join(lines)
    if missing.search(text):
        return False
    if text.strip():  # failed at the sentinel: the first op resolved
        return True
    raise RuntimeError("TFLM op probe: the interpreter loaded a model with an unknown op; cannot tell kernels apart")


@cache
def registered_builtin_ops() -> frozenset[str]:
    """Builtin operator names the installed TFLM interpreter resolves (its kernels' op resolver)."""
    schema = _schema()
    return frozenset(
        name
        for name, code in builtin_codes().items()
        if code != schema.BuiltinOperator.CUSTOM
        and _first_op_resolves(probe_model(builtin=code), missing=_MISSING_BUILTIN)
    )


@cache
def has_custom_op(name: str) -> bool:
    """Whether the installed TFLM interpreter registers a custom op of this name."""
    model = probe_model(builtin=_schema().BuiltinOperator.CUSTOM, custom=name)
    return _first_op_resolves(model, missing=_MISSING_CUSTOM)
