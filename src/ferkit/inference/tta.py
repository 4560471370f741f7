"""Test-time augmentation: average a model's scores over a face and a few flipped/shifted copies.

It suits nets trained with flips and shifts (the default recipe), and multiplies inference cost
by the number of views (6); the mirror image alone costs 2x and, for the bundled model, gave all
of the six views' gain on PublicTest (0.6877 -> 0.6932 flip, 0.6921 six views), which is why the
bundled model now averages each face with its mirror image itself.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

SHIFT = 2  # pixels
VIEWS = ("identity", "flip", "left", "right", "up", "down")


def views(batch: np.ndarray, mirror: bool = True) -> list[np.ndarray]:
    """The batch (N, H, W, 1) as-is, mirrored (unless `mirror` is false), and shifted by SHIFT pixels
    four ways (edges repeated), in VIEWS' order."""
    padded = np.pad(batch, ((0, 0), (SHIFT, SHIFT), (SHIFT, SHIFT), (0, 0)), mode="edge")
    h, w = batch.shape[1:3]
    s = SHIFT
    shifted = [padded[:, s:s + h, 2 * s:2 * s + w], padded[:, s:s + h, :w],
               padded[:, 2 * s:2 * s + h, s:s + w], padded[:, :h, s:s + w]]
    return [batch] + ([batch[:, :, ::-1]] if mirror else []) + shifted


def predict_tta(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray,
                mirror_averaged: bool = False) -> np.ndarray:
    """Mean probabilities over all views, computed in one call to `predict`.

    A model that averages each face with its mirror image itself (`mirror_average`) would score
    the mirrored view exactly as the face: it is left out, so each of the ten distinct images (five
    views and their mirror images) counts once, for 10 network passes instead of 12.
    """
    if not len(batch):
        return predict(batch)
    stacked = views(batch, mirror=not mirror_averaged)
    return predict(np.concatenate(stacked)).reshape(len(stacked), len(batch), -1).mean(axis=0)


def predict_flip(predict: Callable[[np.ndarray], np.ndarray], batch: np.ndarray) -> np.ndarray:
    """Mean probabilities over the faces and their mirror images (an emotion has no handedness)."""
    return (predict(batch) + predict(batch[:, :, ::-1])) / 2
