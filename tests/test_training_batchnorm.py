"""Precise BN: BatchNorm statistics recomputed as the exact average over clean batches."""

from __future__ import annotations

import itertools

import keras
import numpy as np
import pytest

from ferkit.training import batchnorm, budget


def _normalizer(features: int = 3) -> tuple[keras.Model, keras.layers.BatchNormalization]:
    inputs = keras.Input((features,))
    norm = keras.layers.BatchNormalization()
    return keras.Model(inputs, keras.layers.Dense(2)(norm(inputs))), norm


def test_the_statistics_become_the_average_of_the_batches_own():
    model, norm = _normalizer()
    rng = np.random.default_rng(0)
    batches = [rng.normal(5.0 + i, 2.0 + i, (64, 3)).astype("float32") for i in range(3)]
    assert batchnorm.recompute(model, batches) == 1
    np.testing.assert_allclose(norm.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], 0), rtol=1e-5)
    np.testing.assert_allclose(norm.moving_variance.numpy(), np.mean([b.var(0) for b in batches], 0), rtol=1e-4)
    assert norm.momentum == 0.99  # saved with the model: put back


def test_it_depends_on_the_weights_alone_not_on_the_statistics_before():
    """Training mode normalises each batch by its own statistics: recomputing twice gives the same."""
    model, norm = _normalizer()
    batches = [np.random.default_rng(i).normal(3, 1, (32, 3)).astype("float32") for i in range(2)]
    batchnorm.recompute(model, batches)
    first = norm.moving_mean.numpy().copy()
    norm.moving_mean.assign(np.full(3, 100.0, "float32"))
    batchnorm.recompute(model, batches)
    np.testing.assert_allclose(norm.moving_mean.numpy(), first, rtol=1e-6)


def test_frozen_layers_keep_theirs_and_nested_models_are_searched():
    inner, inner_norm = _normalizer()
    frozen = keras.layers.BatchNormalization()
    frozen.trainable = False
    inputs = keras.Input((3,))
    model = keras.Model(inputs, inner(frozen(inputs)))
    assert batchnorm.trainable_batchnorms(model) == [inner_norm]
    batchnorm.recompute(model, [np.full((8, 3), 7.0, "float32") + np.arange(8)[:, None]])
    # 7 + the mean of 0..7, through the frozen layer (mean 0, variance 1 + epsilon 0.001)
    np.testing.assert_allclose(inner_norm.moving_mean.numpy(), np.full(3, 10.5 / np.sqrt(1.001)), rtol=1e-5)


def test_a_network_inside_a_mirror_average_is_reached():
    from ferkit.models import create_model
    from ferkit.models.mirror import mirror_averaged

    network = create_model("fernet", image_size=32, num_classes=3)
    found = batchnorm.trainable_batchnorms(mirror_averaged(network))
    assert len(found) == 12 and set(map(id, found)) == set(map(id, batchnorm.trainable_batchnorms(network)))
    # 12: the stem's, two in each of the four blocks, three in the projections (32 -> 64 -> 128 -> 256)


def test_a_network_without_trainable_batchnorm_is_not_run():
    """A frozen backbone's 40 batches through it would change nothing."""
    calls = []
    frozen, _ = _normalizer()
    frozen.trainable = False
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: calls.append(1) or x)(frozen(inputs)))
    calls.clear()
    assert batchnorm.recompute(model, [np.ones((4, 3), "float32")]) == 0 and calls == []


def test_a_batch_the_model_refuses_leaves_its_momentum_as_it_was():
    model, norm = _normalizer()
    with pytest.raises(ValueError):
        batchnorm.recompute(model, [np.zeros((4, 5), "float32")])
    assert norm.momentum == 0.99


def test_no_batches_change_nothing():
    model, norm = _normalizer()
    assert batchnorm.recompute(model, []) == 0
    np.testing.assert_array_equal(norm.moving_mean.numpy(), np.zeros(3))


@pytest.mark.parametrize("count, limit, sizes", [
    (1000, 10_240, [256, 256, 256]),  # a short last batch would count as much as a whole one: left out
    (1000, 600, [256, 256]),
    (100, 10_240, [100]),  # fewer than a batch: all of them
    (0, 10_240, []),
])
def test_batches_are_whole_and_drawn_at_random(count, limit, sizes):
    faces = np.arange(count, dtype="float32")[:, None]
    batches = batchnorm.batches_of(faces, seed=1, limit=limit)
    assert [len(b) for b in batches] == sizes and batches.count == sum(sizes) and len(batches) == len(sizes)
    if sizes:  # copied out when asked for, by index or slice, from either end
        assert np.array_equal(batches[-1], batches[len(sizes) - 1]) and len(batches[:2]) == min(2, len(sizes))
    with pytest.raises(IndexError):
        batches[len(sizes)]
    drawn = np.concatenate(batches).ravel() if batches else np.array([])
    assert len(set(drawn)) == len(drawn)  # no face twice
    if count > 256:
        assert not np.array_equal(drawn, np.sort(drawn))  # shuffled, the same way for the same seed
        assert np.array_equal(drawn, np.concatenate(batchnorm.batches_of(faces, seed=1, limit=limit)).ravel())


def test_its_time_is_the_first_batch_then_the_second_for_each_after(monkeypatch):
    calls = []
    monkeypatch.setattr(batchnorm, "recompute", lambda model, batches: calls.append(len(batches)))
    ticks = itertools.count()
    clock = lambda: [0, 3, 10, 11][next(ticks)]  # noqa: E731  the first batch 3 s, the second 1 s
    assert budget.seconds_to_recompute(None, [np.zeros(1)] * 5, clock=clock) == 3 + 1 * 4
    assert calls == [1, 1]
    assert budget.seconds_to_recompute(None, []) == 0.0


def test_the_batches_are_copied_out_one_at_a_time():
    """All 40 had been copied at once (90 MiB at 48 px beside the training set); the time limit's
    estimate uses two of them."""
    import tracemalloc

    faces = np.zeros((2560, 48, 48), np.float32)  # 23.6 MB
    tracemalloc.start()
    try:
        batches = batchnorm.batches_of(faces, seed=0)
        made = tracemalloc.get_traced_memory()[1]
        first_two = batches[:2]
        after = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert made < 1_000_000 and after < 6_000_000  # the order alone; then two batches of 2.4 MB
    assert len(first_two) == 2 and len(batches) == 10
