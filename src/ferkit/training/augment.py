"""Geometric training augmentation as one Keras layer: flip, shift, rotation and zoom in one warp.

Keras' RandomFlip/RandomTranslation/RandomRotation/RandomZoom each resample the whole batch; fused
into one affine transform (`keras.ops.image.affine_transform`) the same augmentation costs one
resampling instead of four (benchmarks/bench_training.py measures both). It runs inside the
compiled training step, in parallel over the batch, and uses only `keras.ops` and `keras.random`,
so it works on every Keras backend.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="ferkit")
class RandomFaceAffine(layers.Layer):
    """Per-face random horizontal flip, shift (fraction of the side), rotation (degrees) and zoom.

    Borders are filled by reflection so that no black wedges teach the model a spurious cue.
    Identity unless `training` is true.
    """

    def __init__(self, rotation: float = 10.0, shift: float = 0.1, zoom: float = 0.1, flip: bool = True,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.rotation, self.shift, self.zoom, self.flip, self.seed = rotation, shift, zoom, flip, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training: bool = False):
        if not training:
            return images
        height, width = images.shape[1], images.shape[2]
        n = ops.shape(images)[0]

        def uniform(low: float, high: float):
            return keras.random.uniform((n,), low, high, seed=self.seed_generator)

        angle = uniform(-1.0, 1.0) * (self.rotation * math.pi / 180)
        scale = uniform(1 - self.zoom, 1 + self.zoom)
        mirror = ops.where(uniform(0.0, 1.0) < 0.5, -1.0, 1.0) if self.flip else ops.ones((n,))
        dx, dy = uniform(-1.0, 1.0) * self.shift * width, uniform(-1.0, 1.0) * self.shift * height
        # Output pixel (x, y) samples the input at A @ ((x, y) - centre) + centre + shift.
        cos, sin = ops.cos(angle) * scale, ops.sin(angle) * scale
        a0, a1, b0, b1 = mirror * cos, -sin, mirror * sin, cos
        cx, cy = (width - 1) / 2, (height - 1) / 2
        a2, b2 = cx + dx - a0 * cx - a1 * cy, cy + dy - b0 * cx - b1 * cy
        zeros = ops.zeros((n,))
        transform = ops.stack([a0, a1, a2, b0, b1, b2, zeros, zeros], axis=1)
        warped = ops.image.affine_transform(ops.cast(images, "float32"), transform, fill_mode="reflect")
        return ops.cast(warped, images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "rotation": self.rotation, "shift": self.shift, "zoom": self.zoom,
                "flip": self.flip, "seed": self.seed}
