"""Class and sample weights, and the learning-rate schedule."""

from __future__ import annotations

import numpy as np
import pytest

from ferkit.training import TrainConfig, techniques

def test_class_weights_favour_rare_classes():
    labels = np.array([0] * 90 + [1] * 10)
    balanced = techniques.class_weights(TrainConfig(class_weight="balanced"), labels)
    sqrt = techniques.class_weights(TrainConfig(class_weight="sqrt"), labels)
    assert balanced[1] / balanced[0] == pytest.approx(9)
    assert sqrt[1] / sqrt[0] == pytest.approx(3)
    assert techniques.class_weights(TrainConfig(), labels) is None


def test_sample_weights_follow_the_true_label():
    labels = np.array([0, 0, 0, 1])
    weights = techniques.sample_weights(TrainConfig(class_weight="balanced"), labels)
    np.testing.assert_allclose(weights, [4 / 6, 4 / 6, 4 / 6, 2.0])
    assert techniques.sample_weights(TrainConfig(), labels) is None


def test_cosine_schedule_warms_up_then_decays():
    config = TrainConfig(schedule="cosine", warmup_epochs=1, epochs=4, learning_rate=0.01)
    _, schedule = techniques.optimizer(config, steps_per_epoch=10)
    rates = [float(schedule(step)) for step in (0, 5, 10, 25, 40)]
    assert rates[0] == pytest.approx(0.001) and rates[1] == pytest.approx(0.0055)
    assert rates[2] == pytest.approx(0.01) and rates[3] == pytest.approx(0.005, rel=0.01)
    assert rates[4] < 1e-6


@pytest.mark.parametrize(("epochs", "warmup"), [(2, 1), (1, 0)])
def test_a_warm_up_as_long_as_the_run_leaves_an_epoch_to_anneal(epochs, warmup, caplog):
    config = TrainConfig(schedule="cosine", warmup_epochs=2, epochs=epochs, learning_rate=0.01)
    with caplog.at_level("WARNING", logger="ferkit"):
        _, schedule = techniques.optimizer(config, steps_per_epoch=10)
    assert schedule.warmup_steps == 10 * warmup
    assert f"warm-up shortened from 2 to {warmup}" in caplog.text
    assert float(schedule(10 * epochs)) < 1e-6  # annealed by the end of the run
    assert float(schedule(10 * warmup)) == pytest.approx(0.01)  # the peak, reached at the warm-up's end


def test_a_throwaway_optimizer_shortens_the_warm_up_quietly(caplog):
    """The time limit's probe builds one before the run's own: the warning is said once, by that."""
    config = TrainConfig(schedule="cosine", warmup_epochs=2, epochs=2, learning_rate=0.01)
    with caplog.at_level("WARNING", logger="ferkit"):
        _, schedule = techniques.optimizer(config, steps_per_epoch=10, announce=False)
    assert schedule.warmup_steps == 10 and "warm-up" not in caplog.text


def test_a_warm_up_that_fits_is_kept_and_unannounced(caplog):
    config = TrainConfig(schedule="cosine", warmup_epochs=2, epochs=3, learning_rate=0.01)
    with caplog.at_level("WARNING", logger="ferkit"):
        _, schedule = techniques.optimizer(config, steps_per_epoch=10)
    assert schedule.warmup_steps == 20 and "warm-up" not in caplog.text
