"""A time limit for training that still ends with an annealed model.

Cutting a cosine run at a deadline keeps weights trained at a high learning rate; instead, after
every epoch the run re-plans how many epochs fit (at the mean epoch time so far) and moves the end
of the schedule there, so the rate reaches 0 in the last epoch that fits, and what follows the
last epoch (the test faces' pass, saving) still ends within the limit. Before the first epoch, a
few timed steps say whether a recipe's lighter fallback network should train instead.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np

from ferkit.training import batchnorm
from ferkit.training.techniques import WarmupCosine

log = logging.getLogger("ferkit")


class TimeBudget(keras.callbacks.Callback):
    """Stop after the last epoch that fits in `minutes` counted from `started` (a `clock()` reading).

    `epochs` stays the most a run trains. The first epoch's time holds one-off tracing or
    compilation, so later epochs are timed without it once there are any, and the first is timed
    from the end of its first batch, which holds the tracing: timed whole, an XLA compilation of
    minutes had planned a few epochs, then more, moving the schedule's end (and warm-up) back and
    forth. What came before the first epoch (loading the data, the teacher's pass) counts against
    the limit but is no epoch's.
    `reserve` seconds are kept for the work after the last epoch (`seconds_to_finish`).
    """

    def __init__(self, minutes: float, epochs: int, steps_per_epoch: int, schedule: WarmupCosine | None,
                 started: float, clock: Callable[[], float] = time.monotonic, reserve: float = 0.0):
        super().__init__()
        self.seconds, self.epochs, self.steps_per_epoch = minutes * 60, epochs, steps_per_epoch
        self.schedule, self.started, self.clock, self.reserve = schedule, started, clock, reserve
        self.planned = epochs
        self._first: int | None = None  # the first epoch of this session (> 0 when resumed)
        self._first_end = self._began = 0.0
        self._first_batch_end: float | None = None

    def on_train_begin(self, logs=None):
        """Plan the full length: a resumed run's schedule may end where the last session's limit put it."""
        self._began = self.clock()
        if self.schedule is not None:
            self.schedule.set_total_steps(self.epochs * self.steps_per_epoch)

    def on_train_batch_end(self, batch, logs=None):
        if self._first_batch_end is None:
            self._first_batch_end = self.clock()

    def on_epoch_begin(self, epoch, logs=None):
        if self._first is None:
            self._first = epoch

    def on_epoch_end(self, epoch, logs=None):
        now = self.clock()
        if epoch == self._first:
            self._first_end = now
        planned = min(self.epochs, epoch + 1 + self._epochs_left(epoch, now))
        if planned != self.planned:
            now_ends = self.schedule is not None and planned > epoch + 1  # else the epoch it stops after is done
            log.info("time limit %g min: %d of %d epochs fit%s", self.seconds / 60, planned, self.epochs,
                     f"; the learning rate now ends at epoch {planned}" if now_ends else "")
            self._say_schedule(epoch, planned)
            self.planned = planned
            if self.schedule is not None:
                self.schedule.set_total_steps(planned * self.steps_per_epoch)
        if epoch + 1 >= self.planned:
            self.model.stop_training = True

    def _say_schedule(self, epoch: int, planned: int) -> None:
        """The warm-up ends an epoch before the planned end (WarmupCosine). A run that the limit stops
        now trained its last epoch on the longer schedule planned before it, so its learning rate never
        came down to the schedule's end: said, warming up or not (it had been said "now ends" there)."""
        if self.schedule is None:
            return
        warmup = self.schedule.warmup_steps
        if planned == epoch + 1 and planned * self.steps_per_epoch <= warmup:
            log.warning("the time limit ends the run within its warm-up, so the learning rate is never "
                        "annealed: give a longer --time-limit, or fewer --warmup-epochs")
        elif planned == epoch + 1:
            log.warning("the time limit ends the run after epoch %d, whose learning rate followed the schedule "
                        "planned for %d: it was not annealed to the end; give a longer --time-limit",
                        planned, self.planned)
        elif planned * self.steps_per_epoch <= warmup:
            log.info("time limit: the warm-up now ends at epoch %d, so that epoch %d anneals the learning rate",
                     planned - 1, planned)

    def _epochs_left(self, epoch: int, now: float) -> int:
        later = epoch - self._first  # epochs timed after the first one
        if later:
            per_epoch = (now - self._first_end) / later
        elif self._first_batch_end is not None and self.steps_per_epoch > 1:  # its other batches and validation
            per_epoch = (now - self._first_batch_end) * self.steps_per_epoch / (self.steps_per_epoch - 1)
        else:
            per_epoch = now - self._began
        left = self.started + self.seconds - self.reserve - now  # the work after the last epoch kept out
        return max(math.floor(left / max(per_epoch, 1e-9)), 0)


SAVING_SECONDS = 2.0  # the model, its weights and plots after the last epoch: 0.5 s measured here


def seconds_to_finish(model: keras.Model, faces: np.ndarray, batch_size: int = 256,
                      clock: Callable[[], float] = time.perf_counter, count: int | None = None) -> float:
    """How long the work after the last epoch takes: `model` (the inference model, float32 and
    mirror-averaged, several times slower than a validation pass) predicting `count` faces (the test
    and validation faces; default: all of `faces`), from two timed batches of `faces`, the first
    one's tracing counted once, and saving. The default's took 11 s on a 2-core Xeon, past a limit
    that counted epochs only."""
    count = len(faces) if count is None else count
    if not count or not len(faces):
        return SAVING_SECONDS
    times = []
    for _ in range(2):
        start = clock()
        model.predict(faces[:batch_size], batch_size=batch_size, verbose=0)
        times.append(clock() - start)
    batches = math.ceil(count / batch_size)
    return times[0] + times[1] * (batches - 1) + SAVING_SECONDS


def seconds_to_recompute(model: keras.Model, batches: Sequence[np.ndarray],
                         clock: Callable[[], float] = time.perf_counter) -> float:
    """How long recomputing `model`'s BatchNorm statistics over `batches` takes (precise BN), from
    its first two. It changes them: give it a throwaway model."""
    times = []
    for batch in batches[:2]:
        start = clock()
        batchnorm.recompute(model, [batch])
        times.append(clock() - start)
    return times[0] + times[-1] * (len(batches) - 1) if times else 0.0


def seconds_per_step(trainer: keras.Model, x: np.ndarray, y: np.ndarray, steps: int = 16) -> float:
    """A compiled `trainer`'s median time for a step on the batch `x`, `y`, after two untimed
    steps that trace it. It trains: give it a throwaway copy.
    Sixteen steps, not six: a 2-core cloud CPU's speed wanders by seconds, and six (2-3 s of the
    default's) caught a slow patch, 0.48 s a step where the run's epochs then took 0.34-0.45
    (session 55); seven readings of each on one model, other work beside them, varied by 2.1 times
    for six and 1.6 for sixteen (session 56)."""
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
