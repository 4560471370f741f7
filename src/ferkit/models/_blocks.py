"""Small building blocks shared by the architectures."""

from __future__ import annotations

import keras
from keras import layers


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
    """Translate ferkit's --weights value (checked by the registry) into what keras.applications expects."""
    return None if weights in ("none", "", None) else str(weights)


def load_local_weights(model: keras.Model, weights: str) -> keras.Model:
    """For models without pretrained weights (the registry refuses "imagenet" for them): none, or a
    local weights file of the same model."""
    path = keras_weights_arg(weights)
    if path:
        model.load_weights(path)
    return model
