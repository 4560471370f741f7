"""The seed project's custom CNN: plain Conv/BatchNorm/MaxPool blocks and a dense head."""

from __future__ import annotations

import keras
from keras import layers

from ferkit.errors import FerkitError
from ferkit.models._blocks import classifier, face_input, load_local_weights
from ferkit.models._registry import register_model


@register_model
def custom(
    image_size: int,
    num_classes: int,
    weights: str = "none",
    filters: tuple[int, ...] = (32, 64, 128, 256),
    dense: int = 256,
    dropout: float = 0.4,
) -> keras.Model:
    if image_size < 2 ** len(filters):  # a 2x pooling per block: a face smaller pools to nothing
        raise FerkitError(f"custom with {len(filters)} blocks needs image_size >= {2 ** len(filters)}, "
                          f"got {image_size}")
    inputs = face_input(image_size)
    x = layers.Rescaling(1 / 255)(inputs)
    for f in filters:
        x = layers.Conv2D(f, 3, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization()(x)
        x = layers.ReLU()(x)
        x = layers.MaxPooling2D()(x)
    x = layers.Flatten()(x)
    x = layers.Dense(dense, activation="relu")(x)
    x = layers.Dropout(dropout)(x)
    model = keras.Model(inputs, classifier(x, num_classes), name="custom")
    return load_local_weights(model, weights)
