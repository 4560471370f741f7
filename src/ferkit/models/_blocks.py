"""Small building blocks shared by the architectures."""

from __future__ import annotations

import warnings
import zipfile

import keras
from keras import layers

from ferkit.errors import FerkitError, first_line


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
        with warnings.catch_warnings():  # Keras warns of each layer it cannot fill, then raises anyway
            warnings.simplefilter("ignore")
            _load_weights(model, path)
    return model


def _load_weights(model: keras.Model, path: str) -> None:
    try:
        model.load_weights(path)
    except (OSError, zipfile.BadZipFile, KeyError) as exc:  # h5py's "file signature not found", a cut .keras,
        # a zip named .keras without model.weights.h5
        raise FerkitError(f"cannot read weights from {path}: damaged, or not a Keras weights file "
                          f"({first_line(exc)})") from None
    except ValueError:  # a mirror-averaged run's file (the default's) holds the network inside its wrapper
        from ferkit.models.mirror import mirror_averaged

        try:
            mirror_averaged(model).load_weights(path)  # the wrapper shares the network's weights
        except ValueError:
            raise FerkitError(f"{path} holds no weights of this network ({model.name}, {model.output_shape[-1]} "
                              f"classes, {model.input_shape[1]} px): give a file saved by the same architecture, "
                              "options and classes (a run's model.keras or model.weights.h5)") from None
