"""The training faces as shuffled batches for `model.fit`, without TensorFlow's idle epoch starts.

Given numpy arrays, Keras on TensorFlow builds a tf.data iterator per epoch, and dropping the
last epoch's one waits for tf.data's autotuning thread, which sleeps for up to a minute at a time:
on a 2-core CPU the process sat idle for 52 of 151 s over four epochs (benchmarks/bench_epoch_start.py),
and for about a minute in some of the default recipe's epochs. A `keras.utils.PyDataset` read by
two worker threads makes Keras switch that autotuning off. JAX and PyTorch have no tf.data, and
there the batches are read in order by the training loop itself (see `workers`).
"""

from __future__ import annotations

import contextlib
import gc

import keras
import numpy as np

from ferkit.training.techniques import steps_per_epoch

try:  # Keras' own class, not its public API: without it `release` leaves the thread (below) alone
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetEnqueuer
except ImportError:
    PyDatasetEnqueuer = None


def workers() -> int:
    """Threads that slice batches ahead of the step: two on TensorFlow, as Keras switches tf.data's
    autotuning off only with more than one (keras.src.trainers.data_adapters.py_dataset_adapter).
    One elsewhere, which Keras reads without threads: there it pulls a batch before the first
    epoch, and a workers' queue would then carry batches of one epoch's order into the next."""
    return 2 if keras.backend.backend() == "tensorflow" else 1


class ShuffledBatches(keras.utils.PyDataset):
    """`x`, `y` and optional per-face `sample_weight` in batches, reshuffled for every epoch.

    The order comes from `seed`, so a run is repeatable (a resumed one starts again from the first
    epoch's order, as `fit` on arrays did); the last batch is the remainder, as there.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None, *,
                 batch_size: int, seed: int):
        super().__init__(workers=workers())
        if not len(x) == len(y) == (len(x) if sample_weight is None else len(sample_weight)):
            raise ValueError(f"{len(x)} faces, {len(y)} targets and "
                             f"{len(sample_weight) if sample_weight is not None else 'no'} weights")
        if batch_size < 1 or len(x) == 0:
            raise ValueError(f"batches of {batch_size} from {len(x)} faces")
        self.arrays = (x, y) if sample_weight is None else (x, y, sample_weight)
        self.batch_size = batch_size
        self._rng = np.random.default_rng(seed)
        self._order = self._rng.permutation(len(x))

    def __len__(self) -> int:
        return steps_per_epoch(len(self._order), self.batch_size)  # the count the schedule is planned on

    def __getitem__(self, index: int) -> tuple[np.ndarray, ...]:
        if not 0 <= index < len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        # Sorted, so the rows are read in memory order; the order within a batch does not matter.
        rows = np.sort(self._order[index * self.batch_size:(index + 1) * self.batch_size])
        return tuple(array[rows] for array in self.arrays)

    def on_epoch_end(self) -> None:
        """A new order object rather than a shuffle in place: Keras stops the workers before this
        without waiting for a batch still being sliced, which then reads the old order whole."""
        self._order = self._rng.permutation(len(self._order))

    def release(self) -> None:
        """Let go of the faces once `fit` is done with them.

        On TensorFlow this object outlives `fit`: the `from_generator` dataset Keras builds on it
        stays reachable, so each run trained in one process (`ferkit compare`, a notebook) kept its
        training faces until the process ended. And a `fit` cut inside an epoch (Ctrl-C) never
        ends that epoch, so Keras leaves the thread that queues its batches blocked on a full
        queue; Keras keeps no handle on it, hence the search of the live objects (0.15 s). On JAX
        and PyTorch Keras holds neither after `fit`, even interrupted, and this changes nothing.
        """
        live = gc.get_objects() if PyDatasetEnqueuer else []
        for enqueuer in (o for o in live if isinstance(o, PyDatasetEnqueuer) and o.py_dataset is self):
            with contextlib.suppress(Exception):  # it re-raises a batch's error: not worth a trained run
                enqueuer.stop()
        self.arrays = ()  # after the stop, which waits for the batches being sliced
