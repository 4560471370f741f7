"""Knowledge distillation: part of each training target is a trained model's probabilities.

A stronger model (the bundled ensemble) knows which faces are ambiguous, a fearful face that
also looks surprised, and soft targets pass that on to the network being trained, which one-hot
labels cannot. The teacher runs once over the training faces before the first epoch, not at
every step, so it costs the same however long training runs; the augmented copies of a face
share the clean face's target (flips and small shifts do not change an emotion).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from ferkit.data.preprocess import to_model_input
from ferkit.errors import FerkitError
from ferkit.training.config import TrainConfig

log = logging.getLogger("ferkit")


def teacher_probabilities(config: TrainConfig, faces: np.ndarray) -> np.ndarray | None:
    """The teacher's probabilities over the run's classes (renormalised when it knows more), or None."""
    from ferkit.inference.backends import load_backend  # deferred: only distillation needs a model

    if not config.teacher:
        return None
    backend = load_backend(config.teacher)
    missing = [name for name in config.classes if name not in backend.info.classes]
    if missing:
        raise FerkitError(f"teacher {config.teacher} does not know {', '.join(missing)}: "
                          f"it was trained on {', '.join(backend.info.classes)}")
    started = time.perf_counter()
    probs = backend.predict(to_model_input(faces, backend.info.image_size))
    probs = probs[:, [backend.info.classes.index(name) for name in config.classes]]
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    log.info("teacher %s: soft targets for %d faces in %.1f s", backend.name, len(faces),
             time.perf_counter() - started)
    return probs


def soft_targets(config: TrainConfig, one_hot: np.ndarray, probs: np.ndarray | None) -> np.ndarray:
    """`one_hot` mixed with the teacher's probabilities by `teacher_weight`; unchanged without them."""
    if probs is None:
        return one_hot
    return ((1 - config.teacher_weight) * one_hot + config.teacher_weight * probs).astype("float32")
