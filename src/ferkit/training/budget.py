"""A time limit for training that still ends with an annealed model.

Cutting a cosine run at a deadline keeps weights trained at a high learning rate; instead, after
every epoch the run re-plans how many epochs fit (at the mean epoch time so far) and moves the end
of the schedule there, so the rate reaches 0 in the last epoch that fits. Before the first epoch,
a few timed steps say whether a recipe's lighter fallback network should train instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable

import keras
import numpy as np

from ferkit.training.techniques import WarmupCosine

log = logging.getLogger("ferkit")


class TimeBudget(keras.callbacks.Callback):
    """Stop after the last epoch that fits in `minutes` counted from `started` (a `clock()` reading).

    `epochs` stays the most a run trains. The first epoch's time holds one-off tracing or
    compilation, so later epochs are timed without it once there are any; what came before the
    first epoch (loading the data, the teacher's pass) counts against the limit but is no epoch's.
    """

    def __init__(self, minutes: float, epochs: int, steps_per_epoch: int, schedule: WarmupCosine | None,
                 started: float, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.seconds, self.epochs, self.steps_per_epoch = minutes * 60, epochs, steps_per_epoch
        self.schedule, self.started, self.clock = schedule, started, clock
        self.planned = epochs
        self._first: int | None = None  # the first epoch of this session (> 0 when resumed)
        self._first_end = self._began = 0.0

    def on_train_begin(self, logs=None):
        """Plan the full length: a resumed run's schedule may end where the last session's limit put it."""
        self._began = self.clock()
        if self.schedule is not None:
            self.schedule.set_total_steps(self.epochs * self.steps_per_epoch)

    def on_epoch_begin(self, epoch, logs=None):
        if self._first is None:
            self._first = epoch

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        if epoch == self._first:
            self._first_end = now
        planned = min(self.epochs, epoch + 1 + self._epochs_left(epoch, now))
        if planned != self.planned:
            log.info("time limit %g min: %d of %d epochs fit; the learning rate now ends at epoch %d",
                     self.seconds / 60, planned, self.epochs, planned)
            if self.schedule is not None and planned * self.steps_per_epoch <= self.schedule.warmup_steps:
                log.warning("the time limit ends the run within its warm-up, so the learning rate is never "
                            "annealed: give a longer --time-limit, or fewer --warmup-epochs")
            self.planned = planned
            if self.schedule is not None:
                self.schedule.set_total_steps(planned * self.steps_per_epoch)
        if epoch + 1 >= self.planned:
            self.model.stop_training = True

    def _epochs_left(self, epoch: int, now: float) -> int:
        later = epoch - self._first  # epochs timed after the first one
        per_epoch = (now - self._first_end) / later if later else now - self._began
        return max(math.floor((self.started + self.seconds - now) / max(per_epoch, 1e-9)), 0)


def seconds_per_step(trainer: keras.Model, x: np.ndarray, y: np.ndarray, steps: int = 6) -> float:
    """A compiled `trainer`'s median time for a step on the batch `x`, `y`, after two untimed
    steps that trace it. It trains: give it a throwaway copy."""
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        trainer.train_on_batch(x, y)
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def epochs_that_fit(step_seconds: float, steps_per_epoch: int, minutes: float, started: float,
                    clock: Callable[[], float] = time.monotonic) -> int:
    """How many epochs of `steps_per_epoch` steps fit in what is left of `minutes` since `started`.
    Validation adds about 5% to an epoch (the default recipe's epochs against their steps)."""
    left = started + minutes * 60 - clock()
    return max(math.floor(left / (step_seconds * steps_per_epoch * 1.05)), 0)
