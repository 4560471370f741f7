"""The time limit: re-planned epochs, a schedule that still anneals, on every backend."""

from __future__ import annotations

import csv
import json
import logging
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from conftest import ctrl_c_after, installed
from ferkit.training import TrainConfig, budget, techniques, train
from ferkit.training.budget import TimeBudget

FAST = {"classes": "angry,happy,sad,surprise", "split": "official", "batch_size": 32, "verbose": 0}


class _Clock:
    def __init__(self, *readings: float):
        self.readings = list(readings)

    def __call__(self) -> float:
        return self.readings.pop(0)


def _epochs_until_stop(limit: TimeBudget) -> int:
    limit.set_model(keras.Sequential())
    limit.on_train_begin()
    for epoch in range(limit.epochs):
        limit.on_epoch_begin(epoch)
        limit.on_epoch_end(epoch)
        if getattr(limit.model, "stop_training", False):
            return epoch + 1
    return limit.epochs


def test_the_budget_replans_without_the_first_epochs_compile_time():
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=5)
    # Started at 0 with 60 s; training begins at once, the first epoch ends at 30 s (compilation
    # included), the rest take 10 s: 30 + 3 x 10 s fit. Timed with the first epoch (20, then 16.7 s
    # an epoch), 3 would be planned.
    limit = TimeBudget(1, epochs=10, steps_per_epoch=5, schedule=schedule, started=0.0,
                        clock=_Clock(0, 30, 40, 50, 60))
    assert _epochs_until_stop(limit) == 4
    assert schedule.get_config()["total_steps"] == 20
    assert float(schedule(20)) == pytest.approx(0.0, abs=1e-9)  # annealed at the end of epoch 4
    assert float(schedule(15)) > 0


def test_a_constant_rate_is_not_said_to_end(caplog):
    """The seed recipes' constant rate had been told "the learning rate now ends at epoch N"."""
    limit = TimeBudget(1, epochs=10, steps_per_epoch=5, schedule=None, started=0.0, clock=_Clock(0, 15, 25, 35, 45, 55))
    with caplog.at_level(logging.INFO, logger="ferkit"):
        assert _epochs_until_stop(limit) == 5
    assert "5 of 10 epochs fit" in caplog.text and "learning rate" not in caplog.text


def test_the_first_epoch_is_timed_without_its_first_batchs_tracing():
    """An XLA compilation of minutes in the first batch had planned too few epochs, then more."""
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=10)
    # 60 s: the first batch ends at 20 s (tracing), the other nine steps and validation take 9 s
    limit = TimeBudget(1, epochs=10, steps_per_epoch=10, schedule=schedule, started=0.0, clock=_Clock(0, 20, 29))
    limit.set_model(keras.Sequential())
    limit.on_train_begin()
    limit.on_epoch_begin(0)
    for batch in range(10):
        limit.on_train_batch_end(batch)
    limit.on_epoch_end(0)
    assert limit.planned == 4  # 29 s + 3 x 10 s; timed whole (29 s), 2
    assert schedule.get_config()["total_steps"] == 40


def test_a_limit_that_ends_the_run_within_its_warm_up_shortens_the_warm_up(caplog):
    config = TrainConfig(schedule="cosine", epochs=20, warmup_epochs=2, learning_rate=0.01)
    _, schedule = techniques.optimizer(config, steps_per_epoch=10)
    limit = TimeBudget(2, epochs=20, steps_per_epoch=10, schedule=schedule, started=0.0,
                        clock=_Clock(0, 50, 100))  # 50 s an epoch: 2 of 20 fit, both in the warm-up
    with caplog.at_level(logging.INFO, logger="ferkit"):
        assert _epochs_until_stop(limit) == 2
    assert "the warm-up now ends at epoch 1" in caplog.text and "never annealed" not in caplog.text
    # The second epoch anneals from the peak to 0 instead of climbing on: it had ended at the peak rate
    assert float(schedule(5)) == pytest.approx(0.001 + 0.009 * 5 / 10)
    assert float(schedule(10)) == pytest.approx(0.01)
    assert float(schedule(15)) == pytest.approx(0.005)
    assert float(schedule(20)) == pytest.approx(0.0, abs=1e-9)


def test_a_limit_that_ends_the_run_in_its_first_warm_up_epoch_says_so(caplog):
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=20, warmup_epochs=2), steps_per_epoch=10)
    limit = TimeBudget(1, epochs=20, steps_per_epoch=10, schedule=schedule, started=0.0,
                        clock=_Clock(0, 40))  # a second 40-s epoch would end past 60 s
    with caplog.at_level(logging.WARNING, logger="ferkit"):
        assert _epochs_until_stop(limit) == 1
    assert "within its warm-up" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ferkit"):  # a third fits: annealed, nothing to say
        _epochs_until_stop(TimeBudget(3, epochs=20, steps_per_epoch=10, schedule=schedule, started=0.0,
                                      clock=_Clock(0, 50, 100, 150)))
    assert "warm-up" not in caplog.text


def test_a_limit_that_stops_the_run_at_once_says_its_rate_was_not_annealed(caplog):
    """With no warm-up left, a plan cut to the epoch just trained had been told "the learning rate now
    ends at epoch 2", after that epoch had trained on the longer schedule, and nothing was said."""
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=20), steps_per_epoch=10)
    limit = TimeBudget(1.5, epochs=20, steps_per_epoch=10, schedule=schedule, started=0.0,
                        clock=_Clock(0, 20, 70))  # a 20-s epoch plans 4, then one of 50 s leaves none
    with caplog.at_level(logging.INFO, logger="ferkit"):
        assert _epochs_until_stop(limit) == 2
    assert "4 of 20 epochs fit; the learning rate now ends at epoch 4" in caplog.text
    assert "2 of 20 epochs fit\n" in caplog.text + "\n" and "now ends at epoch 2" not in caplog.text
    assert ("the time limit ends the run after epoch 2, whose learning rate followed the schedule planned for 4: it "
            "was not annealed to the end; give a longer --time-limit") in caplog.text


def test_the_limit_keeps_time_for_the_work_after_the_last_epoch():
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=5)
    # 60 s, epochs of 10 s: six fit, but the test faces' pass and saving take 12 s after them
    limit = TimeBudget(1, epochs=10, steps_per_epoch=5, schedule=schedule, started=0.0, reserve=12,
                        clock=_Clock(0, 10, 20, 30, 40, 50))
    assert _epochs_until_stop(limit) == 4
    assert schedule.get_config()["total_steps"] == 20


def test_the_time_to_finish_is_two_timed_batches_and_saving():
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    # The first batch takes 5 s (tracing), the next 1 s: 1,000 faces in batches of 256 take 5 + 3 x 1 s
    readings = iter([0.0, 5.0, 10.0, 11.0])
    seconds = budget.seconds_to_finish(model, np.zeros((1000, 4), "float32"), clock=lambda: next(readings))
    assert seconds == 8.0 + budget.SAVING_SECONDS
    assert budget.seconds_to_finish(model, np.zeros((0, 4), "float32")) == budget.SAVING_SECONDS
    readings = iter([0.0, 5.0, 10.0, 11.0])  # 1,000 faces timed on the first 256 of them
    assert budget.seconds_to_finish(model, np.zeros((256, 4), "float32"), clock=lambda: next(readings),
                                    count=1000) == 8.0 + budget.SAVING_SECONDS


@pytest.mark.parametrize("recipe, options, inputs", [
    ("seed-custom", {"mirror_average": True}, (48, 48, 1)),
    ("seed-vgg19", {"weights": "none", "image_size": 32, "mirror_average": True}, (32, 32, 1)),
    ("seed-vgg19", {"weights": "none", "image_size": 32}, None),  # the head on the test faces' features
])
def test_a_run_with_a_time_limit_times_the_model_that_scores_its_test_faces(synthetic_folder, tmp_path,
                                                                            monkeypatch, recipe, options, inputs):
    timed = []

    def _timed(model, faces, **kwargs):
        timed.append(([layer.name for layer in model.layers], model.dtype_policy.name, faces.shape, kwargs["count"]))
        return 0.0

    monkeypatch.setattr(budget, "seconds_to_finish", _timed)
    train(synthetic_folder, recipe=recipe, epochs=1, time_limit=30, output=tmp_path / "run", **{**FAST, **options})
    (layers, policy, shape, count), = timed
    assert shape[0] == 60 and count == 60 + 24  # timed on test faces, for the validation faces it scores too
    if inputs:  # the float32 model that scores the test faces, their mirror images too
        assert "mirror_average" in layers and policy == "float32" and shape[1:] == inputs
    else:
        assert len(shape) == 2 and "mirror_average" not in layers


def test_a_budget_that_fits_every_epoch_changes_nothing():
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=3), steps_per_epoch=5)
    limit = TimeBudget(10, epochs=3, steps_per_epoch=5, schedule=schedule, started=0.0,
                        clock=_Clock(0, 1, 2, 3))
    assert _epochs_until_stop(limit) == 3
    assert schedule.get_config()["total_steps"] == 15


def test_the_time_before_training_counts_against_the_limit_but_not_as_an_epoch():
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=10), steps_per_epoch=5)
    # 60 s in all; loading and the teacher's pass take 30 s, then every epoch 10 s: three fit. Timing
    # the first epoch from the start (40 s) would have stopped the run after it.
    limit = TimeBudget(1, epochs=10, steps_per_epoch=5, schedule=schedule, started=0.0,
                        clock=_Clock(30, 40, 50, 60))
    assert _epochs_until_stop(limit) == 3
    assert schedule.get_config()["total_steps"] == 15


def test_a_resumed_run_plans_its_schedule_afresh():
    _, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=4), steps_per_epoch=5)
    schedule.set_total_steps(10)  # as restored from a session whose limit ended the schedule at epoch 2
    limit = TimeBudget(10, epochs=4, steps_per_epoch=5, schedule=schedule, started=0.0, clock=_Clock(1, 2))
    limit.on_train_begin()
    assert schedule.get_config()["total_steps"] == 20


def test_the_schedule_matches_keras_cosine_decay():
    ours = techniques.WarmupCosine(0.01, warmup_steps=10, total_steps=50)
    keras_own = keras.optimizers.schedules.CosineDecay(0.001, decay_steps=40, warmup_target=0.01, warmup_steps=10)
    for step in (0, 3, 10, 27, 49, 50, 60):
        assert float(ours(step)) == pytest.approx(float(keras_own(step)), rel=1e-5, abs=1e-9)


def test_a_run_over_its_time_limit_stops_after_the_epoch_and_is_saved(synthetic_folder, tmp_path, caplog):
    # 0.001 min is over before the first epoch ends: one epoch of four, then a finished run directory.
    with caplog.at_level(logging.INFO, logger="ferkit"):
        result = train(synthetic_folder, output=tmp_path / "run", epochs=4, time_limit=0.001, **FAST)
    with open(result.run_dir / "history.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 1
    assert not result.interrupted and (result.run_dir / "model.keras").is_file()
    # the overrun said, not left for the user to notice (a 3-minute limit had taken 4.1 in silence)
    assert f"the run took {result.minutes:.1f} min, over its time limit of 0.001: even its first epoch" in caplog.text
    assert json.loads((result.run_dir / "metrics.json").read_text())["train_minutes"] == pytest.approx(
        result.minutes, abs=0.05)


_SHORTENED_MID_FIT = """
import keras, numpy as np
from ferkit.training import TrainConfig, techniques
model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
optimizer, schedule = techniques.optimizer(TrainConfig(schedule="cosine", epochs=3, weight_decay=0.01), 4)
model.compile(optimizer=optimizer, loss="mse")
seen = {}
class Shorten(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        seen[epoch] = [w.copy() for w in model.get_weights()]
        if epoch == 0:
            schedule.set_total_steps(4)  # the run now ends here: rate 0 from the next step on
x = np.random.default_rng(0).normal(size=(16, 4)).astype("float32")
model.fit(x, x[:, :2] * 3, batch_size=4, epochs=3, verbose=0, callbacks=[Shorten()])
assert all(np.array_equal(a, b) for a, b in zip(seen[0], seen[2], strict=True)), "weights moved after the schedule ended"
"""


@pytest.mark.parametrize("backend", installed("tensorflow", "jax", "torch"))
def test_a_schedule_shortened_mid_fit_reaches_the_compiled_step(backend):
    """JAX compiles the step with its state: the run's length must be state it reads each epoch."""
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", _SHORTENED_MID_FIT], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]


def test_time_limit_must_not_be_negative():
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match=r"time_limit must be minutes >= 0 \(0: no limit\), got -1"):
        TrainConfig(time_limit=-1)


def test_epochs_that_fit_count_what_is_left_of_the_limit_and_validation():
    # 60 s limit, 10 s gone: 50 s left for epochs of 10 steps of 0.1 s, 1.05 s with validation.
    assert budget.epochs_that_fit(0.1, 10, minutes=1, started=0.0, clock=lambda: 10.0) == 47
    assert budget.epochs_that_fit(0.1, 10, minutes=1, started=0.0, clock=lambda: 70.0) == 0  # over already


def test_a_step_is_timed_on_a_compiled_trainer_after_its_tracing(monkeypatch):
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer="adam", loss="mse")
    x = np.ones((8, 4), "float32")
    before = model.get_weights()[0].copy()
    # Two tracing steps of 9 s, then steps of 1, 2, 3, 4, 5 and 100 s: the median of the last six.
    readings = iter([0, 9, 0, 9, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 100])
    monkeypatch.setattr(budget.time, "perf_counter", lambda: float(next(readings)))
    assert budget.seconds_per_step(model, x, x[:, :2], steps=6) == 3.5
    assert not np.array_equal(before, model.get_weights()[0])  # it really trained
    # By default sixteen timed steps: a slow patch of four 100-s steps first leaves the median at 1 s
    # (six would have read 100), and no 19th step is timed.
    readings = iter([0, 9] * 2 + [0, 100] * 4 + [0, 1] * 12 + [-1])
    monkeypatch.setattr(budget.time, "perf_counter", lambda: float(next(readings)))
    assert budget.seconds_per_step(model, x, x[:, :2]) == 1.0
    assert next(readings) == -1


@pytest.mark.parametrize("step_seconds, trained", [(1000.0, {"filters": [8, 16]}), (1e-6, {})])
def test_a_slow_machine_trains_the_recipes_lighter_network(synthetic_folder, tmp_path, monkeypatch, caplog,
                                                          step_seconds, trained):
    """Timed too slow for 60% of its epochs, the run trains (and records) the fallback's options."""
    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: step_seconds)
    with caplog.at_level(logging.INFO, logger="ferkit"):
        run = train(synthetic_folder, recipe="seed-custom", epochs=2, time_limit=30,
                    fallback_model_options={"filters": [8, 16]}, output=tmp_path / "run", **FAST).run_dir
    assert json.loads((run / "config.json").read_text())["model_options"] == trained
    convs = [layer.filters for layer in keras.models.load_model(run / "model.keras").layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert convs == trained.get("filters", [32, 64, 128, 256])
    assert ("training the recipe's lighter" in caplog.text) is bool(trained)


@pytest.mark.parametrize("fallback_below, fits, fallback", [(2, 2, False), (2, 1, True), (20, 6, False),
                                                           (20, 5, True)])
def test_the_fallback_trains_where_fewer_epochs_fit_than_the_recipe_names(
        synthetic_folder, tmp_path, monkeypatch, fallback_below, fits, fallback):
    """Of 10 epochs, the fallback trains where fewer than the recipe's `fallback_below` fit, and where
    that is over 60% of them (6), only where fewer than 6 fit (no number named: 60%, the test
    below)."""
    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1.0)  # nothing to time
    monkeypatch.setattr(budget, "epochs_that_fit", lambda *args, **kwargs: fits)
    run = train(synthetic_folder, recipe="seed-custom", epochs=10, time_limit=30, fallback_below=fallback_below,
                fallback_model_options={"filters": [8, 16]}, output=tmp_path / "run",
                callbacks=[ctrl_c_after(0)], **FAST).run_dir  # the choice is made: one epoch is enough
    assert (json.loads((run / "config.json").read_text())["model_options"] == {"filters": [8, 16]}) == fallback


def _never(*args, **kwargs):
    raise AssertionError("timed a step")


def test_a_fallback_may_train_on_smaller_faces(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.inference.backends import load_backend

    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1000.0)
    run = train(synthetic_folder, recipe="seed-custom", epochs=1, time_limit=30, fallback_image_size=32,
                output=tmp_path / "run", **FAST).run_dir
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 32
    # info and compare show the description: it says which network trained, not only the log
    assert config["description"].endswith("Trained its lighter fallback here, on 32-px faces: its own network "
                                          "would not have fitted the time limit.")
    assert keras.models.load_model(run / "model.keras").input_shape == (None, 32, 32, 1)
    assert load_backend(run).info.image_size == 32  # the export, which inference resizes faces for


def test_without_a_time_limit_nothing_is_timed(synthetic_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "seconds_per_step", _never)
    run = train(synthetic_folder, recipe="seed-custom", epochs=1, time_limit=0,
                fallback_model_options={"filters": [8, 16]}, output=tmp_path / "run", **FAST).run_dir
    assert json.loads((run / "config.json").read_text())["model_options"] == {}


@pytest.mark.parametrize("fit, trained", [(7, {}), (5, {"filters": [8, 16]})])
def test_the_fallback_trains_below_three_fifths_of_the_epochs(synthetic_folder, tmp_path, monkeypatch,
                                                             fit, trained):
    """7 of 10 epochs keep the recipe's network (three quarters, the threshold until session 30, did not)."""
    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1.0)
    monkeypatch.setattr(budget, "epochs_that_fit", lambda *args, **kwargs: fit)
    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", epochs=10, time_limit=30, fallback_model_options={"filters": [8, 16]},
          output=run, callbacks=[ctrl_c_after(0)], **FAST)
    assert json.loads((run / "config.json").read_text())["model_options"] == trained


def test_the_probe_says_all_epochs_fit_rather_than_more_than_were_asked_for(synthetic_folder, tmp_path,
                                                                           monkeypatch, caplog):
    import logging

    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 0.001)
    monkeypatch.setattr(budget, "epochs_that_fit", lambda *args, **kwargs: 511)
    caplog.set_level(logging.INFO)
    train(synthetic_folder, recipe="seed-custom", epochs=2, time_limit=30, fallback_model_options={"filters": [8, 16]},
          output=tmp_path / "run", callbacks=[ctrl_c_after(0)], **FAST)
    assert "time limit 30 min: all 2 epochs of custom" in caplog.text and "511" not in caplog.text


def test_a_resumed_run_keeps_the_network_it_started_with(synthetic_folder, tmp_path, monkeypatch):
    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1000.0)
    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", epochs=2, time_limit=30, fallback_model_options={"filters": [8, 16]},
          output=run, callbacks=[ctrl_c_after(0)], **FAST)
    monkeypatch.setattr(budget, "seconds_per_step", _never)
    train(resume=run, verbose=0)
    convs = [layer.filters for layer in keras.models.load_model(run / "model.keras").layers
             if isinstance(layer, keras.layers.Conv2D)]
    assert convs == [8, 16]


def test_a_typo_in_the_fallback_fails_before_the_data_is_read(tmp_path):
    from ferkit.errors import FerkitError

    with pytest.raises(FerkitError, match=r"fallback network \(\[fallback_model_options\].*no option 'depth'"):
        train(tmp_path / "absent.zip", recipe="seed-custom", fallback_model_options={"depth": 3})


def test_a_recipe_that_changes_the_network_drops_the_fallback_of_its_base(tmp_path):
    assert TrainConfig.from_recipe("default").fallback_model_options == {"blocks": [0, 1, 1, 1]}
    (tmp_path / "longer.toml").write_text('base = "default"\nepochs = 30\n')
    assert TrainConfig.from_recipe(str(tmp_path / "longer.toml")).fallback_model_options == {"blocks": [0, 1, 1, 1]}
    (tmp_path / "mine.toml").write_text('base = "default"\n[model_options]\nblocks = [1, 1, 1, 1]\n')
    assert TrainConfig.from_recipe(str(tmp_path / "mine.toml")).fallback_model_options == {}
    (tmp_path / "small.toml").write_text('base = "default"\nfallback_image_size = 40\n')
    for changes, kept in (('epochs = 30', 40), ('image_size = 64', 0), ('[model_options]\nblocks = [1, 1, 1, 1]', 0)):
        (tmp_path / "child.toml").write_text(f'base = "small.toml"\n{changes}\n')
        assert TrainConfig.from_recipe(str(tmp_path / "child.toml")).fallback_image_size == kept, changes
    assert TrainConfig.from_recipe(str(tmp_path / "small.toml"), image_size=64).fallback_image_size == 0  # a flag
    assert TrainConfig.from_recipe(str(tmp_path / "small.toml"), epochs=3).fallback_image_size == 40


def test_a_recipe_table_changes_only_the_options_it_names_and_restating_a_value_changes_nothing(tmp_path):
    (tmp_path / "se.toml").write_text('base = "default"\n[model_options]\nse_ratio = 0.25\n')
    config = TrainConfig.from_recipe(str(tmp_path / "se.toml"))
    assert config.model_options == {"blocks": [0, 1, 2, 2], "se_ratio": 0.25}  # the base's blocks kept
    assert config.fallback_model_options == {} and config.fallback_image_size == 0  # another network now
    (tmp_path / "same.toml").write_text('base = "default"\nimage_size = 48\nmodel = "fernet"\n'
                                        '[model_options]\nblocks = [0, 1, 2, 2]\n')
    flags = TrainConfig.from_recipe("default", model="fernet", image_size=48)
    for config in (TrainConfig.from_recipe(str(tmp_path / "same.toml")), flags):
        assert (config.fallback_model_options, config.fallback_image_size) == ({"blocks": [0, 1, 1, 1]}, 40)
    assert flags.description == TrainConfig.from_recipe("default").description  # it still describes the run
