"""The training techniques a recipe switches on: optimizer and schedule, loss, class weights, augmentation.

All of it is plain Keras (layers, losses, optimizers), so it runs on any Keras backend, and the
augmentation lives in a training-only wrapper so the saved and exported model never contains it.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import keras
import numpy as np
from keras import layers, ops
from sklearn.utils.class_weight import compute_class_weight

from ferkit.training.augment import RandomFaceAffine
from ferkit.training.config import TrainConfig

log = logging.getLogger("ferkit")


def optimizer(config: TrainConfig, steps_per_epoch: int,
              announce: bool = True) -> tuple[keras.optimizers.Optimizer, WarmupCosine | None]:
    """Adam (the seed's), AdamW when weight decay is set; constant or warm-up + cosine learning rate.

    Returns the optimizer and its `WarmupCosine` schedule (None for a constant rate). `announce`:
    warn of a shortened warm-up (not for a throwaway copy, such as the time limit's probe).
    """
    schedule = None
    if config.schedule == "cosine":
        schedule = WarmupCosine(config.learning_rate, warmup_epochs(config, announce) * steps_per_epoch,
                                config.epochs * steps_per_epoch, anneal_steps=steps_per_epoch)
    rate = schedule if schedule is not None else config.learning_rate
    if config.weight_decay > 0:
        opt = keras.optimizers.AdamW(rate, weight_decay=config.weight_decay)
    else:
        opt = keras.optimizers.Adam(rate)
    if schedule is not None:
        schedule.track(opt)
    return opt, schedule


def warmup_epochs(config: TrainConfig, announce: bool = True) -> int:
    """The recipe's warm-up, leaving at least one epoch after it: a run that ends while the rate
    still climbs (`--epochs 2` under the default's 2 warm-up epochs) would keep weights trained at
    the peak rate, never annealed."""
    warmup = min(config.warmup_epochs, config.epochs - 1)
    if warmup < config.warmup_epochs and announce:
        log.warning("warm-up shortened from %d to %d epoch%s: the learning rate anneals in the last of "
                    "the %d", config.warmup_epochs, warmup, "s" * (warmup != 1), config.epochs)
    return warmup


@keras.saving.register_keras_serializable(package="ferkit")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """Keras' CosineDecay with linear warm-up from rate/10, ending at 0 after `total_steps`.

    Unlike CosineDecay, the run's length can change mid-run (a time limit shortens it so that the
    rate still anneals to 0): once `track`ed it is an optimizer variable, the only kind of state
    that a compiled JAX training step reads afresh each epoch. The warm-up ends `anneal_steps`
    before the end at the latest, so that a run cut short by a time limit still anneals. A plan that
    grows again (the first epoch's time holds its tracing) lengthens it again, and the rate steps
    back onto its ramp for a while: a dip, where a run ending in its warm-up was never annealed.
    Keeping the shorter end would take a new optimizer variable, and Keras then skips every saved
    one of a backup made before it (its step count too), restarting the schedule of a resumed run.
    """

    def __init__(self, rate: float, warmup_steps: int, total_steps: int, anneal_steps: int = 1):
        self.rate, self.warmup_steps, self.anneal_steps = float(rate), int(warmup_steps), max(int(anneal_steps), 1)
        self.total_steps = float(max(total_steps, 1))

    def track(self, opt: keras.optimizers.Optimizer) -> None:
        self.total_steps = opt.add_variable((), keras.initializers.Constant(self.total_steps), "float32",
                                            name="schedule_total_steps")

    def set_total_steps(self, steps: int) -> None:
        self.total_steps.assign(float(max(steps, 1)))

    def __call__(self, step):
        step, total = ops.cast(step, "float32"), ops.cast(self.total_steps, "float32")
        warmup = ops.clip(total - self.anneal_steps, 0.0, float(self.warmup_steps))
        decay_steps = ops.maximum(total - warmup, 1.0)
        done = ops.clip(step - warmup, 0.0, decay_steps) / decay_steps
        cosine = self.rate * 0.5 * (1.0 + ops.cos(math.pi * done))
        if not self.warmup_steps:
            return cosine
        start = self.rate / 10
        climbed = step / ops.maximum(warmup, 1.0)
        return ops.where(step < warmup, start + (self.rate - start) * climbed, cosine)

    def get_config(self) -> dict:
        total = float(ops.convert_to_numpy(self.total_steps))
        return {"rate": self.rate, "warmup_steps": self.warmup_steps, "total_steps": int(total),
                "anneal_steps": self.anneal_steps}


def loss_and_targets(config: TrainConfig,
                     num_classes: int) -> tuple[keras.losses.Loss, Callable[[np.ndarray], np.ndarray]]:
    """Sparse cross-entropy (the seed's); label smoothing and a teacher need one-hot targets."""
    if config.label_smoothing > 0 or config.teacher:
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=config.label_smoothing)
        return loss, lambda y: keras.utils.to_categorical(y, num_classes)
    return keras.losses.SparseCategoricalCrossentropy(), lambda y: y


def sample_weights(config: TrainConfig, labels: np.ndarray) -> np.ndarray | None:
    """`class_weights` per face. Keras' own `class_weight` reads a soft target's class from its
    argmax, which a teacher can move; the true label is what the weight is for."""
    weights = class_weights(config, labels)
    return None if weights is None else np.array([weights[int(label)] for label in labels], "float32")


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
