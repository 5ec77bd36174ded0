"""Loop variables a WHILE body passes through unchanged get a copy of their own before int8 calibration.

A recurrent layer's `tf.while_loop` reads its input sequence from a loop variable that the body returns as it
came in (in the .tflite: a body subgraph whose output i is its input tensor i). LiteRT's WHILE kernel then
hands the op's output tensor no memory of its own, and the converter's calibrator, which logs every float
output of every op, reads it and crashes the process (tensorflow/tensorflow#75140: every Keras 3 LSTM, GRU and
Bidirectional model to `tflite:int8` or `tflite:int16x8`). Routing each such output through a one-input
CONCATENATION (a copy) gives it a tensor of its own; the calibration statistics are the same (the values are).
The copy stays in the quantized model, with a QUANTIZE before it and a DEQUANTIZE after it where the loop
variable is float: three ops over the loop variable per iteration (an LSTM over 32 steps of 8 features: 32
times 256 values per call), left as noted work (removing them means matching that chain in the body).
"""

from __future__ import annotations

from typing import Any


def without_while_passthrough(flatbuffer: bytes) -> tuple[bytes, int]:
    """(the model with every float pass-through of a WHILE body copied, how many were copied)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    bodies = _while_bodies(model, schema)
    floats = (schema.TensorType.FLOAT32, schema.TensorType.FLOAT16, schema.TensorType.FLOAT64)  # what it logs
    copied = 0
    for index in sorted(bodies):
        subgraph = model.subgraphs[index]
        for position, (given, returned) in enumerate(zip(subgraph.inputs, subgraph.outputs, strict=False)):
            if given != returned or subgraph.tensors[given].type not in floats:
                continue
            subgraph.outputs[position] = _copy(model, subgraph, given, schema)
            copied += 1
    if not copied:
        return flatbuffer, 0
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), copied


def _while_bodies(model: Any, schema: Any) -> set[int]:
    codes = [max(code.builtinCode, code.deprecatedBuiltinCode) for code in model.operatorCodes]
    bodies = set()
    for subgraph in model.subgraphs:
        for operator in subgraph.operators or []:
            options = operator.builtinOptions
            is_while = codes[operator.opcodeIndex] == schema.BuiltinOperator.WHILE
            if is_while and isinstance(options, schema.WhileOptionsT):
                bodies.add(options.bodySubgraphIndex)
    return bodies


def _copy(model: Any, subgraph: Any, source: int, schema: Any) -> int:
    """Append a one-input CONCATENATION of `source` (a copy, whatever its shape, dynamic dimensions included)
    to `subgraph`; returns the new output tensor's index."""
    tensor = subgraph.tensors[source]
    copy = schema.TensorT()
    copy.shape = None if tensor.shape is None else list(tensor.shape)
    copy.shapeSignature = None if tensor.shapeSignature is None else list(tensor.shapeSignature)
    copy.type = tensor.type
    copy.buffer = 0
    copy.name = (tensor.name or b"") + b"/edgeport_copy"
    subgraph.tensors.append(copy)
    options = schema.ConcatenationOptionsT()
    options.axis = 0
    operator = schema.OperatorT()
    operator.opcodeIndex = opcode_index(model, schema, schema.BuiltinOperator.CONCATENATION)
    operator.inputs = [source]
    operator.outputs = [len(subgraph.tensors) - 1]
    operator.builtinOptionsType = schema.BuiltinOptions.ConcatenationOptions
    operator.builtinOptions = options
    subgraph.operators.append(operator)
    return len(subgraph.tensors) - 1


def opcode_index(model: Any, schema: Any, builtin: int) -> int:
    """The index of `builtin`'s operator code in the model (ModelT), added if missing."""
    for index, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return index
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1
