"""Which network a run trains and which it saves: the recipe's own, its lighter fallback where the
time limit would cut the own one short, and the float32 model a run keeps (mirror-averaged, its
BatchNorm statistics recomputed). The trainer, compare and scripts/half_weights.py build them here."""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable
from typing import Any, TypeVar

import keras
import numpy as np

from ferkit.data.preprocess import to_model_input
from ferkit.data.splits import Splits
from ferkit.errors import FerkitError
from ferkit.models import create_model
from ferkit.models._blocks import keras_weights_arg
from ferkit.models.mirror import mirror_averaged
from ferkit.training import batchnorm, budget, techniques
from ferkit.training.config import TrainConfig
from ferkit.training.features import frozen_backbone

log = logging.getLogger("ferkit")
T = TypeVar("T")
# What a run that trained its fallback says of it in its description (info, compare): around its words
FALLBACK_SAID = ("Trained its lighter fallback here, ", ": its own network would not have fitted the time limit.")


def check_fallback(config: TrainConfig, mixed_precision: bool) -> None:
    """Builds the recipe's fallback network, if it has one, so that a bad option there fails now,
    named as the fallback's: it had read as an error in `[model_options]`, which was not at fault."""
    if config.has_fallback:
        try:
            build_model(config.with_fallback(), "none", mixed_precision)
        except FerkitError as exc:
            raise FerkitError(f"the recipe's fallback network ([fallback_model_options], fallback_image_size): "
                              f"{exc}") from None


def describe_fallback(config: TrainConfig, options: dict[str, Any], image_size: int) -> str:
    """A network trained instead of `config`'s, in words ("" if it is the same one)."""
    words = [json.dumps(options)] if _as_json(options) != _as_json(config.model_options) else []
    words += [f"on {image_size}-px faces"] if image_size != config.image_size else []
    return " ".join(words)


def fallback_trained(description: str) -> str:
    """The fallback a run trained, as its description says it (`lighter_if_slow`), or "": how `compare`
    tells a run's fallback apart, whether it trained the run itself or finds it already trained."""
    after = description.partition(FALLBACK_SAID[0])[2]
    return after.partition(FALLBACK_SAID[1])[0] if after else ""


def _as_json(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)  # tuples and lists alike


def warn_if_random_frozen(config: TrainConfig, model: keras.Model) -> None:
    """Said once a run, of the run's own weights: the builder had said it of every network built
    without weights, and a run rebuilds its network so (the saved model, a resume, the time limit's
    timings), so every ImageNet run of a seed transfer recipe ended by calling its backbone random."""
    if keras_weights_arg(config.weights) is None and frozen_backbone(model) is not None:
        log.warning("%s: a frozen backbone without pretrained weights keeps its random features, and only the "
                    "head learns from them; give it ImageNet weights, or train it whole (freeze = false under "
                    "[model_options] in a recipe file)", config.model)


def build_model(config: TrainConfig, weights: str, mixed_precision: bool) -> keras.Model:
    """The recipe's model; under bfloat16 mixed precision when asked (ferkit.training.precision), and
    float32 after, for the layers a run adds (augmentation, the mirror average)."""
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if mixed_precision else "float32")
    try:
        return create_model(config.model, image_size=config.image_size, num_classes=len(config.classes),
                            weights=weights, **config.model_options)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def keeps_precision_policy(work: Callable[..., T]) -> Callable[..., T]:
    """`work` (train, compare) in float32 as build_model leaves it, and the caller's own Keras policy
    (a notebook's mixed_float16) put back after: it had been left at float32."""
    @functools.wraps(work)
    def kept(*args, **kwargs):
        policy = keras.mixed_precision.global_policy()
        try:
            return work(*args, **kwargs)
        finally:
            keras.mixed_precision.set_global_policy(policy)
    return kept


def lighter_if_slow(config: TrainConfig, model: keras.Model, splits: Splits, started: float,
                     bfloat16: bool) -> tuple[TrainConfig, keras.Model]:
    """The recipe's network, or its fallback when a few timed steps say that the time limit would
    cut it to fewer than `config.fallback_epochs` epochs: on a slow CPU more epochs of a lighter
    network learned more (benchmarks/ablations/README.md, "TensorFlow's oneDNN kernels, and a
    lighter network"). The probe runs after the teacher's pass, so what is left of the limit is known."""
    lighter = config.with_fallback()
    if (not config.time_limit or not config.has_fallback
            or uses_features(model, config)):  # a frozen backbone trains its head alone: nothing to time
        return config, model
    probe = techniques.with_augmentation(build_model(config, "none", bfloat16), techniques.augmentation(config))
    steps = techniques.steps_per_epoch(len(splits.train.labels), config.batch_size)
    probe.compile(optimizer=techniques.optimizer(config, steps, announce=False)[0],
                  loss="sparse_categorical_crossentropy")
    batch = slice(0, config.batch_size)
    step = budget.seconds_per_step(probe, to_model_input(splits.train.images[batch], config.image_size),
                                   splits.train.labels[batch])
    fit = budget.epochs_that_fit(step, steps, config.time_limit, started)
    mine = f"{config.model} {json.dumps(config.model_options)}"
    if fit >= config.fallback_epochs:
        log.info("time limit %g min: %s of %s fit (%.2f s/step)", config.time_limit,
                 f"about {fit} of {config.epochs} epochs" if fit < config.epochs
                 else f"all {config.epochs} epoch{'s' * (config.epochs != 1)}",
                 mine, step)
        return config, model
    log.info("time limit %g min: only about %d of %d epochs of %s fit (%.2f s/step): training the "
             "recipe's lighter fallback %s instead", config.time_limit, fit, config.epochs, mine, step,
             describe_fallback(config, lighter.model_options, lighter.image_size))
    keras.utils.set_random_seed(config.seed)  # initialised as if the recipe had named it
    # Said in the run's own description too (info, compare), not only in this log
    said = f"{FALLBACK_SAID[0]}{describe_fallback(config, lighter.model_options, lighter.image_size)}{FALLBACK_SAID[1]}"
    lighter = TrainConfig.from_dict({**lighter.to_dict(), "description": f"{lighter.description} {said}".strip()})
    return lighter, build_model(lighter, lighter.weights, bfloat16)


def inference_model(config: TrainConfig, weights: list[np.ndarray],
                    bn_faces: np.ndarray | None = None) -> keras.Model:
    """`weights` in a fresh float32 model as a run saves it: no bfloat16 ops and no optimizer
    (resuming is the backup's job; a saved optimizer only warns on loading), mirror-averaged when
    the recipe says so. Also how scripts/half_weights.py rebuilds a run from its weights alone.
    With `bn_faces` (and `precise_bn`) its BatchNorm statistics are recomputed on them first."""
    plain = build_model(config, "none", mixed_precision=False)
    plain.set_weights(weights)
    if config.precise_bn and bn_faces is not None:
        recompute_batchnorm(plain, bn_faces, config.seed)
    return mirror_averaged(plain) if config.mirror_average else plain


def recompute_batchnorm(model: keras.Model, faces: np.ndarray, seed: int) -> None:
    if not batchnorm.trainable_batchnorms(model):
        log.info("precise BN: this network has no trainable BatchNorm layer, nothing to recompute")
        return
    t0, batches = time.time(), batchnorm.batches_of(faces, seed)
    log.info("recomputing BatchNorm statistics on %d training faces (precise BN)...", batches.count)
    layers = batchnorm.recompute(model, batches)
    log.info("recomputed the statistics of %d BatchNorm layer%s on %d training faces in %.1f s",
             layers, "s" * (layers != 1), batches.count, time.time() - t0)


def uses_features(model: keras.Model, config: TrainConfig) -> bool:
    return (config.precompute_features and not config.augment and config.erasing == 0
            and frozen_backbone(model) is not None)
