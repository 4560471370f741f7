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
from ferkit.inference.backends import DEFAULT_MODEL, load_backend, resolve_model
from ferkit.inference.tta import predict_flip
from ferkit.runs import RunDir, replacing
from ferkit.training import teacher_table
from ferkit.training.config import TrainConfig

log = logging.getLogger("ferkit")


def resumed_or_new(config: TrainConfig, faces: np.ndarray, run: RunDir | None) -> np.ndarray | None:
    """The targets a resumed run started with, or the teacher's now.

    A resume must not change targets mid-run (the bundled model may have been replaced, or a
    teacher run directory deleted, since the run started), so the first pass is kept in the run.
    """
    if config.teacher and _kept(run):
        try:
            probs = np.load(run.teacher_targets)
        except (OSError, ValueError, EOFError):  # damaged on disk: not worth the run
            probs = None
        if probs is not None and probs.shape == (len(faces), len(config.classes)):
            log.info("teacher targets: kept from the run's start (%s)", run.teacher_targets)
            return probs
        log.warning("%s does not match the training faces or cannot be read: asking the teacher again",
                    run.teacher_targets)
    return teacher_probabilities(config, faces)


def keep(run: RunDir, probs: np.ndarray | None) -> None:
    if probs is not None:  # whole or not at all: a resume loads it instead of asking the teacher again
        with replacing(run.teacher_targets) as part:
            np.save(part, probs)


TEACHER_SAW_TEST = ("distilled from the bundled model, which learnt from 90% of FER2013's Training part, "
                    "on a random split of FER2013, whose val and test parts share those faces: test it with "
                    "--split official")


def teacher_saw_test(config: TrainConfig) -> bool:
    return config.teacher == DEFAULT_MODEL and config.split == "random"


def check_teacher(config: TrainConfig, run: RunDir | None) -> None:
    """A teacher that does not exist or does not know the run's classes, said before the data loads
    (and before `ferkit compare` trains its first recipe); a resume has its targets."""
    if config.teacher and not _kept(run):
        _check_classes(config, load_backend(config.teacher).info.classes)


def _check_classes(config: TrainConfig, known: tuple[str, ...]) -> None:
    missing = [name for name in config.classes if name not in known]
    if missing:
        raise FerkitError(f"teacher {config.teacher} does not know {', '.join(missing)}: "
                          f"it was trained on {', '.join(known)}")


def _kept(run: RunDir | None) -> bool:
    return run is not None and run.teacher_targets.is_file()


def teacher_probabilities(config: TrainConfig, faces: np.ndarray) -> np.ndarray | None:
    """The teacher's probabilities over the run's classes (renormalised when it knows more), or None."""
    if not config.teacher:
        return None
    backend = load_backend(config.teacher)
    _check_classes(config, backend.info.classes)
    started = time.perf_counter()
    mirrored = backend.info.mirror_averaged  # it averages them itself: not twice
    flip = config.teacher_flip and not mirrored
    known = None if flip else teacher_table.lookup(resolve_model(config.teacher), faces)  # it holds plain answers
    probs, found = known or (np.zeros((len(faces), len(backend.info.classes)), np.float32), np.zeros(len(faces), bool))
    if teacher_saw_test(config) and (known is None or found.any()):  # its table holds FER2013's Training faces:
        log.warning(TEACHER_SAW_TEST)  # none of them among one's own data, whose test faces it never saw
    if not found.all():
        batch = to_model_input(faces[~found], backend.info.image_size)
        probs[~found] = predict_flip(backend.predict, batch) if flip else backend.predict(batch)
    probs = probs[:, [backend.info.classes.index(name) for name in config.classes]]
    probs = probs / np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    log.info("teacher %s: soft targets for %d faces%s%s in %.1f s", backend.name, len(faces),
             " (averaged with their mirror images)" if config.teacher_flip or mirrored else "",
             f", {found.sum()} of them from its {teacher_table.TABLE_NAME}" if found.any() else "",
             time.perf_counter() - started)
    return probs


def soft_targets(config: TrainConfig, one_hot: np.ndarray, probs: np.ndarray | None) -> np.ndarray:
    """`one_hot` mixed with the teacher's probabilities by `teacher_weight`; unchanged without them."""
    if probs is None:
        return one_hot
    return ((1 - config.teacher_weight) * one_hot + config.teacher_weight * probs).astype("float32")
