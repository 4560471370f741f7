"""The shuffled training batches: every face once per epoch, a new repeatable order each epoch,
and no tf.data autotuning (whose thread left epoch starts idle for up to a minute)."""

from __future__ import annotations

import importlib.util

import keras
import numpy as np
import pytest

from ferkit.training import batches as batches_module
from ferkit.training.batches import ShuffledBatches


def _faces(n: int = 10):
    x = np.arange(n, dtype="float32").reshape(n, 1, 1, 1) * np.ones((1, 2, 2, 1), "float32")
    return x, np.arange(n) % 3, np.arange(n, dtype="float32") / 10


def _epoch(batches: ShuffledBatches) -> list[tuple[np.ndarray, ...]]:
    return [batches[i] for i in range(len(batches))]


def test_an_epoch_holds_every_face_once_with_its_own_target_and_weight():
    x, y, w = _faces(10)
    batches = ShuffledBatches(x, y, w, batch_size=4, seed=0)
    epoch = _epoch(batches)
    assert [len(b[0]) for b in epoch] == [4, 4, 2]  # the remainder last, as fit on arrays does
    ids = np.concatenate([b[0][:, 0, 0, 0] for b in epoch]).astype(int)
    assert sorted(ids) == list(range(10))
    for bx, by, bw in epoch:
        face = bx[:, 0, 0, 0].astype(int)
        np.testing.assert_array_equal(by, face % 3)
        np.testing.assert_allclose(bw, face / 10)


def test_without_weights_a_batch_is_faces_and_targets():
    x, y, _ = _faces(5)
    batch = ShuffledBatches(x, y, batch_size=8, seed=0)[0]
    assert len(batch) == 2 and len(batch[0]) == 5


def test_each_epoch_has_a_new_order_and_a_seed_repeats_it():
    x, y, _ = _faces(64)

    def orders(seed: int) -> list[list[int]]:
        batches, seen = ShuffledBatches(x, y, batch_size=8, seed=seed), []
        for _ in range(3):
            seen.append([int(v) for b in _epoch(batches) for v in b[0][:, 0, 0, 0]])
            batches.on_epoch_end()
        return seen

    first = orders(0)
    assert first[0] != first[1] != first[2]
    assert first == orders(0)
    assert first != orders(1)


@pytest.mark.parametrize("kwargs, message", [
    ({"y": np.zeros(3)}, "4 faces, 3 targets"),
    ({"sample_weight": np.ones(5)}, "5 weights"),
    ({"batch_size": 0}, "batches of 0"),
    ({"x": np.zeros((0, 2, 2, 1)), "y": np.zeros(0)}, "from 0 faces"),
])
def test_mismatched_or_empty_inputs_fail(kwargs, message):
    args = {"x": np.zeros((4, 2, 2, 1)), "y": np.zeros(4), "sample_weight": None, "batch_size": 2, "seed": 0}
    with pytest.raises(ValueError, match=message):
        ShuffledBatches(**{**args, **kwargs})


def test_a_batch_past_the_end_raises_index_error():
    x, y, _ = _faces(5)
    batches = ShuffledBatches(x, y, batch_size=2, seed=0)
    with pytest.raises(IndexError):
        batches[3]


class _Seen(keras.layers.Layer):
    """Notes the faces of every batch that training runs on (eagerly, so they are plain arrays)."""

    def __init__(self):
        super().__init__()
        self.epochs: list[list[frozenset[int]]] = []

    def call(self, x, training=False):
        if training:
            self.epochs[-1].append(frozenset(int(v) for v in keras.ops.convert_to_numpy(x)[:, 0, 0, 0]))
        return x


class _NewEpoch(keras.callbacks.Callback):
    def __init__(self, seen: _Seen):
        super().__init__()
        self.seen = seen

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.epochs.append([])


def test_fit_trains_on_every_face_once_per_epoch_in_new_batches_and_uses_the_weights():
    """What the model itself receives, so batches left over from another epoch's order would show.
    Zero weights on every face leave the model untouched: fit reads the third array as weights."""
    x, y, _ = _faces(32)
    seen = _Seen()
    model = keras.Sequential([keras.Input((2, 2, 1)), seen, keras.layers.Flatten(), keras.layers.Dense(3)])
    model.compile(optimizer=keras.optimizers.SGD(0.1), run_eagerly=True,
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = [w.copy() for w in model.get_weights()]
    model.fit(ShuffledBatches(x, y, np.zeros(32, "float32"), batch_size=8, seed=3), epochs=3, verbose=0,
              shuffle=False, callbacks=[_NewEpoch(seen)])
    assert len(seen.epochs) == 3
    for epoch in seen.epochs:
        assert len(epoch) == 4 and frozenset().union(*epoch) == frozenset(range(32))
    assert len({frozenset(epoch) for epoch in seen.epochs}) == 3
    for old, new in zip(before, model.get_weights()):
        np.testing.assert_array_equal(old, new)


@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="TensorFlow's tf.data only")
def test_keras_turns_tf_data_autotuning_off_for_these_batches():
    """The reason the class exists: a Keras that dropped this (with more than one worker) would
    bring back the idle minute at epoch starts (benchmarks/bench_epoch_start.py)."""
    from keras.src.trainers.data_adapters.py_dataset_adapter import PyDatasetAdapter

    x, y, _ = _faces(8)
    dataset = PyDatasetAdapter(ShuffledBatches(x, y, batch_size=4, seed=0), shuffle=False).get_tf_dataset()
    assert dataset.options().autotune.enabled is False


@pytest.mark.parametrize("backend, count", [("tensorflow", 2), ("jax", 1), ("torch", 1)])
def test_worker_threads_only_on_tensorflow(monkeypatch, backend, count):
    """Elsewhere workers would carry the batches Keras pulls before the first epoch into it."""
    monkeypatch.setattr(keras.backend, "backend", lambda: backend)
    assert batches_module.workers() == count
