"""Train a small CNN on scikit-learn's bundled 8x8 digits (seconds on a laptop CPU) and export it.

Writes OUT/saved_model (model.export), OUT/holdout.npz (held-out samples keyed by the input name) and
OUT/calibration.npz (training samples for int8 calibration). Nothing is downloaded: the digits ship with
scikit-learn.

    python examples/train_digits.py --out examples/digits
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

INPUT_NAME = "image"


def load_digits_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[..., None]  # 8x8x1 in [0, 1]
    return train_test_split(
        images, digits.target.astype(np.int32), test_size=0.25, random_state=seed, stratify=digits.target
    )


def build_model(keras):
    inputs = keras.Input(shape=(8, 8, 1), name=INPUT_NAME)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.DepthwiseConv2D(3, padding="same", activation="relu")(x)
    x = keras.layers.Conv2D(32, 1, activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="digits_cnn")


def train(out: Path, epochs: int = 12, seed: int = 0) -> float:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    x_train, x_test, y_train, y_test = load_digits_split(seed)
    model = build_model(keras)
    model.compile(optimizer=keras.optimizers.Adam(2e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=epochs, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    out.mkdir(parents=True, exist_ok=True)
    model.export(str(out / "saved_model"), verbose=False)
    np.savez(out / "holdout.npz", **{INPUT_NAME: x_test})
    np.savez(out / "calibration.npz", **{INPUT_NAME: x_train[:200]})
    np.save(out / "holdout_labels.npy", y_test)
    del tf
    return float(accuracy)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("digits"))
    parser.add_argument("--epochs", type=int, default=12)
    args = parser.parse_args()
    accuracy = train(args.out, args.epochs)
    print(f"digits CNN: held-out accuracy {accuracy:.1%}; SavedModel and samples in {args.out}")


if __name__ == "__main__":
    main()
