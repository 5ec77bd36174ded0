"""model.json in the TF.js graph-model format.

`modelTopology` is the GraphDef in protobuf's JSON mapping (camelCase fields, int64 as strings, bytes as
base64, enums by name), which is what tfjs-converter's OperationMapper reads. `signature` maps the
SavedModel signature's input and output names to tensor names, so `model.execute({name: tensor}, [name])`
works with signature names; `userDefinedMetadata.structuredOutputKeys` names `predict()` outputs.
"""

from __future__ import annotations

import json
from pathlib import Path

MODEL_FILE = "model.json"


def tensor_info(spec, tensor_name: str) -> dict:
    from tensorflow.core.framework import types_pb2

    from edgeport.model.tf_quiet import import_tensorflow

    tf = import_tensorflow()
    info = {"name": tensor_name, "dtype": types_pb2.DataType.Name(tf.as_dtype(spec.dtype).as_datatype_enum)}
    if spec.shape is not None:
        info["tensorShape"] = {"dim": [{"size": str(-1 if d is None else d)} for d in spec.shape]}
    return info


def signature_json(signature, input_tensors: dict[str, str], output_tensors: dict[str, str]) -> dict:
    return {
        "inputs": {spec.name: tensor_info(spec, input_tensors[spec.name]) for spec in signature.inputs},
        "outputs": {spec.name: tensor_info(spec, output_tensors[spec.name]) for spec in signature.outputs},
    }


def model_json(
    graph_def, *, signature: dict, weights_manifest: list[dict], generated_by: str, converted_by: str, initializer=None
) -> dict:
    from google.protobuf import json_format

    content = {
        "format": "graph-model",
        "generatedBy": generated_by,
        "convertedBy": converted_by,
        "modelTopology": json_format.MessageToDict(graph_def),
        "signature": signature,
        "userDefinedMetadata": {"structuredOutputKeys": list(signature["outputs"])},
        "weightsManifest": weights_manifest,
    }
    if initializer is not None:  # creates and fills hash tables before the first run
        content["modelInitializer"] = json_format.MessageToDict(initializer)
    return content


def write_model_json(folder: Path, content: dict) -> Path:
    path = folder / MODEL_FILE
    path.write_text(json.dumps(content, separators=(",", ":")))
    return path
