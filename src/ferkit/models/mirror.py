"""A model that scores each face together with its mirror image and averages the two.

An emotion has no handedness, yet a network trained on randomly flipped faces still scores a face
and its mirror image differently, and their average is the better guess: 0.35-1.29 points more
accurate on the validation faces of each of seven runs of the default recipe or a variant of it
(benchmarks/ablations/README.md, "Each face averaged with its mirror image"). Built into the saved
model rather than left to `--tta` so that everything that loads it (evaluation, the recognizer,
the server, the ONNX file in someone else's app) gets the same scores. The price is twice the
inference work, done as one batch of 2N.
"""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="ferkit")
class MirrorAverage(layers.Layer):
    """`model`'s probabilities averaged over each face (N, H, W, C) and the face flipped left-right."""

    def __init__(self, model: keras.Model, **kwargs):
        super().__init__(**kwargs)
        self.inner = model

    def call(self, faces):
        n = ops.shape(faces)[0]
        scores = self.inner(ops.concatenate([faces, ops.flip(faces, axis=2)], axis=0))
        return (scores[:n] + scores[n:]) / 2

    def compute_output_shape(self, input_shape):
        return self.inner.compute_output_shape(input_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "model": keras.saving.serialize_keras_object(self.inner)}

    @classmethod
    def from_config(cls, config: dict) -> MirrorAverage:
        return cls(keras.saving.deserialize_keras_object(config.pop("model")), **config)


def averages_mirrors(model: keras.Model) -> bool:
    """Whether `model` averages each face with its mirror image itself: through a MirrorAverage, or
    as an ensemble all of whose members do (their layers are inside the members)."""
    if any(isinstance(layer, MirrorAverage) for layer in model.layers):
        return True
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    return bool(members) and all(averages_mirrors(member) for member in members)


def mirror_averaged(model: keras.Model) -> keras.Model:
    """`model` (weights shared, not copied) wrapped so that it averages each face with its mirror image."""
    inputs = keras.Input(model.input_shape[1:], name="face")
    return keras.Model(inputs, MirrorAverage(model, name="mirror_average")(inputs), name=model.name)
