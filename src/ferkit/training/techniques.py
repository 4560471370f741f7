"""The training techniques a recipe switches on: optimizer and schedule, loss, class weights, augmentation.

All of it is plain Keras (layers, losses, optimizers), so it runs on any Keras backend, and the
augmentation lives in a training-only wrapper so the saved and exported model never contains it.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers
from sklearn.utils.class_weight import compute_class_weight

from ferkit.training.augment import RandomFaceAffine
from ferkit.training.config import TrainConfig


def optimizer(config: TrainConfig, steps_per_epoch: int) -> keras.optimizers.Optimizer:
    """Adam (the seed's), AdamW when weight decay is set; constant or warm-up + cosine learning rate."""
    rate = config.learning_rate
    if config.schedule == "cosine":
        warmup = config.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            initial_learning_rate=config.learning_rate / 10 if warmup else config.learning_rate,
            decay_steps=max(config.epochs * steps_per_epoch - warmup, 1),
            warmup_target=config.learning_rate if warmup else None,
            warmup_steps=warmup,
        )
    if config.weight_decay > 0:
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    return keras.optimizers.Adam(rate)


def loss_and_targets(config: TrainConfig, num_classes: int):
    """Sparse cross-entropy (the seed's); label smoothing needs one-hot targets in Keras."""
    if config.label_smoothing > 0:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        return loss, lambda y: keras.utils.to_categorical(y, num_classes)
    return keras.losses.SparseCategoricalCrossentropy(), lambda y: y


def class_weights(config: TrainConfig, labels: np.ndarray) -> dict[int, float] | None:
    """Inverse-frequency weights (or their square root), so rare classes are not ignored.

    FER2013's disgust is 1.5% of the faces: "balanced" weighs it ~9x, "sqrt" ~3x, trading less
    overall accuracy for recall on it.
    """
    if config.class_weight == "none":
        return None
    present = np.unique(labels)
    weights = compute_class_weight("balanced", classes=present, y=labels)
    if config.class_weight == "sqrt":
        weights = np.sqrt(weights)
    return {int(c): float(w) for c, w in zip(present, weights)}


def augmentation(config: TrainConfig) -> keras.Sequential | None:
    """Random flip/shift/rotation/zoom in one warp (+ random erasing) as Keras layers, or None."""
    parts = []
    if config.augment:
        parts.append(RandomFaceAffine(seed=config.seed))
    if config.erasing > 0:
        parts.append(layers.RandomErasing(factor=config.erasing, value_range=(0, 255), seed=config.seed + 1))
    return keras.Sequential(parts, name="augmentation") if parts else None


def with_augmentation(model: keras.Model, augment: keras.Sequential | None) -> keras.Model:
    """A training wrapper (augment -> model) sharing the model's weights; the model itself stays clean."""
    if augment is None:
        return model
    inputs = keras.Input(model.input_shape[1:], name="face")
    return keras.Model(inputs, model(augment(inputs)), name=f"{model.name}_train")


def steps_per_epoch(num_samples: int, batch_size: int) -> int:
    return max(math.ceil(num_samples / batch_size), 1)
