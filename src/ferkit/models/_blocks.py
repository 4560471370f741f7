"""Small building blocks shared by the architectures."""

from __future__ import annotations

from pathlib import Path

import keras
from keras import layers

from ferkit.errors import FerkitError


def face_input(image_size: int) -> keras.KerasTensor:
    """The common model input: raw grayscale pixels, 0..255 (see ferkit.data.preprocess)."""
    return keras.Input((image_size, image_size, 1), name="face")


def classifier(x, num_classes: int):
    """Softmax output in float32 even under mixed precision, so probabilities stay exact."""
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="emotion")(x)


def compose(backbone: keras.Model, head: keras.Model, name: str) -> keras.Model:
    """backbone -> head as one model, keeping both reachable by name for frozen-feature training."""
    inputs = keras.Input(backbone.input_shape[1:], name="face")
    return keras.Model(inputs, head(backbone(inputs)), name=name)


def keras_weights_arg(weights: str) -> str | None:
    """Translate ferkit's --weights value into what keras.applications expects."""
    if weights in ("none", "", None):
        return None
    if weights == "imagenet":
        return "imagenet"
    if not Path(weights).is_file():
        raise FerkitError(f"weights file not found: {weights} (use imagenet, none or a local path)")
    return str(weights)


def load_local_weights(model: keras.Model, weights: str) -> keras.Model:
    """For models without pretrained weights: accept none, or a local weights file of the same model."""
    if weights == "imagenet":
        raise FerkitError(f"model {model.name!r} has no ImageNet weights: use --weights none or a path")
    path = keras_weights_arg(weights)
    if path:
        model.load_weights(path)
    return model
