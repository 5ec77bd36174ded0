"""Import TensorFlow once, with its start-up chatter silenced (it belongs in logs, not on a user's terminal),
and without importing Keras on the way.

TensorFlow's `__init__` imports all of Keras (`keras.src.optimizers`, "so that Keras optimizers are registered
for SavedModels that hold them") inside a `try` that tolerates its absence. edgeport never needs that: it loads
SavedModels with `tf.saved_model.load` (an object whose registered class is unknown is revived as a generic
trackable; the serving functions are the same), converts them from the SavedModel, and tf2onnx touches Keras
only for Keras files. Measured on the 2-core build machine: `import tensorflow` 6.0-6.7 s, 4.7 s with Keras
deferred; each model service pays it once. Keras stays importable: the first `tf.keras` or `import keras`
imports it then, with TensorFlow's `tensorflow.keras` module path set as TensorFlow itself sets it.
"""

from __future__ import annotations

import os
import sys


def import_tensorflow():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # bit-stable float results for reference outputs
    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    tf = sys.modules.get("tensorflow") or _import_deferring_keras()

    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover
        pass
    return tf


def _import_deferring_keras():
    deferred = "keras" not in sys.modules
    if deferred:
        sys.modules["keras"] = None  # type: ignore[assignment]  # `import keras` raises ImportError meanwhile
    try:
        import tensorflow as tf
    finally:
        if deferred and "keras" in sys.modules and sys.modules["keras"] is None:
            del sys.modules["keras"]
    if deferred:
        _restore_keras_module_path(tf)
    return tf


def _restore_keras_module_path(tf) -> None:
    """What TensorFlow's `__init__` prepends to `tensorflow.__path__` (so that `import tensorflow.keras.x`
    works), which it could not find while Keras was hidden: its entries are None."""
    from tensorflow.python.tools.module_util import get_parent_dir_for_name

    path = [entry for entry in tf.__path__ if entry is not None]
    legacy = os.environ.get("TF_USE_LEGACY_KERAS", None) in ("true", "True", "1")
    for name in ("keras._tf_keras.keras", "tf_keras.api._v2.keras" if legacy else "keras.api._v2.keras"):
        directory = get_parent_dir_for_name(name)
        if directory is not None and directory not in path:
            path.insert(0, directory)
    tf.__path__[:] = path
