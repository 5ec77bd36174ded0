"""saved_model.pb read as a protobuf: nothing of the model is loaded or run (the scan and the loader both read it)."""

from __future__ import annotations

from pathlib import Path

from edgeport.errors import ModelLoadError
from edgeport.model.tf_quiet import import_tensorflow


def read_saved_model_proto(path: Path):
    tf = import_tensorflow()
    from google.protobuf import message, text_format
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    pb = path / "saved_model.pb"
    try:
        if pb.is_file():
            proto.ParseFromString(pb.read_bytes())
        else:
            text_format.Parse((path / "saved_model.pbtxt").read_text(), proto)
    except (message.DecodeError, text_format.ParseError, UnicodeDecodeError, RuntimeWarning) as exc:
        raise ModelLoadError(f"{pb} is corrupt or truncated ({type(exc).__name__}); re-export the SavedModel") from None
    if not proto.meta_graphs:
        raise ModelLoadError(f"{pb} holds no MetaGraph (truncated?); re-export the SavedModel")
    del tf
    return proto
