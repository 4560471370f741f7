"""BatchNorm statistics recomputed on clean training faces once training ends ("precise BN").

Keras keeps each BatchNormalization layer's inference statistics as a moving average (momentum
0.99: about the last 100 steps) of the batches it trained on. Those batches were augmented
(flipped, shifted, rotated, zoomed), computed in bfloat16, and drawn while the weights still
moved, so the averages describe neither the network that is kept nor the faces it will see. An
exact average over un-augmented training faces, in float32 (a frozen backbone's head: over the
features it trained on, as they were computed), through the final weights (Wu &
Johnson, "Rethinking 'Batch' in BatchNorm", 2021, call it precise BN) made the saved model of
three default-recipe runs 0.9-1.3 points more accurate on their validation faces
(benchmarks/ablations/README.md, "BatchNorm statistics recomputed after training"). On small
data the averages lag far more: a run on 1,000 real faces (14 epochs of 15 steps) scored 0.34 on
its 160 test faces with them and 0.45 with precise BN.

Only trainable layers change: a frozen backbone's statistics stay the ones it was trained with.
The pass runs the network in training mode, so dropout is on; ferkit's models have no
BatchNorm after a dropout layer, where that would skew the statistics.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import keras
import numpy as np

FACES = 10_240  # 2,560 scored 0.1 points less on validation (two runs); 40 batches took 23 s on 2 cores
BATCH = 256


def trainable_batchnorms(model: keras.Layer) -> list[keras.layers.BatchNormalization]:
    """Every trainable BatchNormalization in `model` at any depth: in nested models, and in layers
    that hold a model (MirrorAverage's), which a walk over `.layers` does not reach."""
    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization) and layer.trainable]


class Batches(Sequence):
    """Batches of `faces` in `order`, each copied out only when it is asked for: all 40 at once had
    been 90 MiB at 48 px beside the training set, and the time limit's estimate uses two."""

    def __init__(self, faces: np.ndarray, order: np.ndarray, batch_size: int):
        self.faces, self.order, self.batch_size = faces, order, batch_size
        self.count = len(order)  # faces in all of them

    def __len__(self) -> int:
        return -(-self.count // self.batch_size)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        start = index % len(self) * self.batch_size
        return self.faces[self.order[start:start + self.batch_size]]


def batches_of(faces: np.ndarray, seed: int, limit: int = FACES, batch_size: int = BATCH) -> Batches:
    """Up to `limit` of `faces` in a random order, in whole batches: each batch counts the same in
    the average, so a short last one is left out (all of them when there are fewer than a batch)."""
    order = np.random.default_rng(seed).permutation(len(faces))[:limit]
    if len(order) > batch_size:
        order = order[:len(order) // batch_size * batch_size]
    return Batches(faces, order, batch_size)


def recompute(model: keras.Model, batches: Sequence[np.ndarray]) -> int:
    """Replaces the moving statistics of `model`'s trainable BatchNorm layers with their average
    over `batches` (each batch's mean and variance, as training computes them). Returns how many
    layers changed. The layers' momentum is put back, as it is saved with the model."""
    layers = trainable_batchnorms(model)
    if not layers or not batches:  # no passes for nothing (no BatchNorm, or all of it frozen)
        return 0
    momenta = [layer.momentum for layer in layers]
    try:
        with _no_gradients():
            for count, batch in enumerate(batches, start=1):
                for layer in layers:  # moving = (count - 1)/count old + 1/count new: a running mean
                    layer.momentum = (count - 1) / count
                model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
    return len(layers)


def _no_gradients() -> contextlib.AbstractContextManager:
    """PyTorch records a call on weights that need gradients for a backward pass, holding every
    activation of it; TensorFlow and JAX record nothing outside a training step."""
    if keras.backend.backend() == "torch":
        import torch

        return torch.no_grad()
    return contextlib.nullcontext()
