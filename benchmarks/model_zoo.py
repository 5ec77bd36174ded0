"""The issue's model zoo as SavedModels with random weights (nothing downloaded), exported once into the cache.

  * MobileNetV2, EfficientNetB0: keras.applications, weights=None, 224x224x3, `classifier_activation=None`
    so the check compares logits (a random-weight softmax is nearly flat and makes any cosine look perfect),
    built by benchmarks/common.py `export_keras_application`: BatchNorm statistics from one training-mode pass,
    so the random-weight activations are not collapsed (logits ~1e-11 otherwise, which makes int8 meaningless);
  * transformer_block: keras MultiHeadAttention + residual + LayerNormalization + GELU Dense feed-forward,
    input [1, 16, 32];
  * multi_io: a tf.Module taking two inputs and returning a dict of three outputs;
  * gru_varlen: a keras GRU over a variable-length sequence, input [None, None, 8]
    (the CLI needs `--input-shape tokens=1,20,8`);
  * tf1_builder: a TF1 graph with variables saved by tf.compat.v1.saved_model.Builder (`--legacy` not needed);
  * lstm_text: a text classifier, Embedding(1000, 32) + LSTM(64) + Dense(5) over int32 token ids [1, 64]
    (synthetic ids: `--input-range ids=0:1000`, the whole vocabulary; the default integer range 0:10 uses 10 tokens).

Each builder runs in its own Python process (keras and TF1 graph state never mix) and returns the folder.
Run `python benchmarks/model_zoo.py` to build them all and print their paths.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

try:
    from benchmarks.common import CACHE, export_keras_application
except ModuleNotFoundError:  # run as a script: benchmarks/ is on sys.path, not the repository root
    from common import CACHE, export_keras_application

PRELUDE = """\
import os
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
import sys
import numpy as np
import tensorflow as tf
import keras
keras.utils.set_random_seed(0)
path = sys.argv[1]
"""

TRANSFORMER_BLOCK = """\
tokens = keras.Input((16, 32), batch_size=1, name="tokens")
attended = keras.layers.MultiHeadAttention(num_heads=4, key_dim=8)(tokens, tokens)
x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([tokens, attended]))
hidden = keras.layers.Dense(64, activation="gelu")(x)
x = keras.layers.LayerNormalization(epsilon=1e-6)(keras.layers.Add()([x, keras.layers.Dense(32)(hidden)]))
keras.Model(tokens, x).export(path, verbose=False)
"""

MULTI_IO = """\
class MultiIO(tf.Module):
    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.w_image = tf.Variable(rng.normal(0, 0.2, (3, 3, 3, 8)).astype("float32"))
        self.w_meta = tf.Variable(rng.normal(0, 0.3, (4, 8)).astype("float32"))
        self.w_head = tf.Variable(rng.normal(0, 0.3, (8, 5)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec([1, 32, 32, 3], tf.float32, name="image"),
                                  tf.TensorSpec([1, 4], tf.float32, name="meta")])
    def serve(self, image, meta):
        features = tf.nn.relu(tf.nn.conv2d(image, self.w_image, 2, "SAME"))
        pooled = tf.reduce_mean(features, axis=[1, 2]) + tf.tanh(meta @ self.w_meta)
        logits = pooled @ self.w_head
        return {"logits": logits, "probs": tf.nn.softmax(logits), "embedding": pooled}

module = MultiIO()
tf.saved_model.save(module, path, signatures={"serving_default": module.serve})
"""

GRU_VARLEN = """\
tokens = keras.Input((None, 8), name="tokens")  # [None, None, 8]: batch and length are dynamic
x = keras.layers.GRU(32)(tokens)
keras.Model(tokens, keras.layers.Dense(4)(x)).export(path, verbose=False)
"""

TF1_BUILDER = """\
graph = tf.Graph()
with graph.as_default():
    x = tf.compat.v1.placeholder(tf.float32, [1, 12], name="x")
    rng = np.random.default_rng(0)
    w1 = tf.compat.v1.get_variable("w1", initializer=rng.normal(0, 0.4, (12, 24)).astype("float32"))
    b1 = tf.compat.v1.get_variable("b1", initializer=rng.normal(0, 0.1, (24,)).astype("float32"))
    w2 = tf.compat.v1.get_variable("w2", initializer=rng.normal(0, 0.4, (24, 6)).astype("float32"))
    hidden = tf.nn.relu(tf.matmul(x, w1) + b1)
    scores = tf.identity(tf.matmul(hidden, w2), name="scores")
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        builder = tf.compat.v1.saved_model.Builder(path)
        signature = tf.compat.v1.saved_model.predict_signature_def({"x": x}, {"scores": scores})
        builder.add_meta_graph_and_variables(session, ["serve"], signature_def_map={"serving_default": signature})
        builder.save()
"""

LSTM_TEXT = """\
ids = keras.Input((64,), batch_size=1, dtype="int32", name="ids")
x = keras.layers.Embedding(1000, 32)(ids)
x = keras.layers.LSTM(64)(x)
keras.Model(ids, keras.layers.Dense(5)(x)).export(path, verbose=False)
"""


@dataclass(frozen=True)
class ZooModel:
    name: str
    code: str = ""  # builder script run after PRELUDE (path = sys.argv[1]); empty for a keras application
    args: tuple[str, ...] = ()
    image: bool = False  # also checked on Chromium webgl
    input_shapes: tuple[str, ...] = field(default=())  # --input-shape values for dynamic dims
    input_ranges: tuple[str, ...] = field(default=())  # --input-range values (token ids within the vocabulary)
    application: str = ""  # keras.applications name, built by common.export_keras_application


ZOO = (
    ZooModel("mobilenet_v2", application="MobileNetV2", image=True),
    ZooModel("efficientnet_b0", application="EfficientNetB0", image=True),
    ZooModel("transformer_block", TRANSFORMER_BLOCK),
    ZooModel("multi_io", MULTI_IO),
    ZooModel("gru_varlen", GRU_VARLEN, input_shapes=("tokens=1,20,8",)),
    ZooModel("tf1_builder", TF1_BUILDER),
    ZooModel("lstm_text", LSTM_TEXT, input_ranges=("ids=0:1000",)),
)


def zoo_model(name: str) -> ZooModel:
    for model in ZOO:
        if model.name == name:
            return model
    raise KeyError(f"no zoo model {name!r}; choose from {', '.join(m.name for m in ZOO)}")


def export(model: ZooModel, *, cache: Path = CACHE) -> Path:
    """The model's SavedModel folder in the cache, built in a fresh Python process the first time.

    Keras applications live where common.export_keras_application keeps them (common.CACHE, whatever `cache` says).
    """
    if model.application:
        return export_keras_application(model.application)
    path = cache / "zoo" / model.name
    if (path / "saved_model.pb").is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    code = PRELUDE + textwrap.dedent(model.code)
    subprocess.run([sys.executable, "-c", code, str(path), *model.args], check=True)
    return path


def main() -> None:
    for model in ZOO:
        print(f"{model.name}: {export(model)}")


if __name__ == "__main__":
    main()
