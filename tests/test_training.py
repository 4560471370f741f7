from __future__ import annotations

import csv
import gc
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import keras
import numpy as np
import pytest

from conftest import installed
from ferkit.data.preprocess import to_model_input
from ferkit.errors import FerkitError
from ferkit.training import TrainConfig, list_recipes, load_recipe, train
from ferkit.training import techniques
from ferkit.training.batches import ShuffledBatches

CLASSES = "angry,happy,sad,surprise"
FAST = dict(classes=CLASSES, split="official", epochs=4, batch_size=32, learning_rate=0.003, verbose=0)


def test_custom_learns_and_writes_the_run_directory(synthetic_folder, tmp_path):
    result = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **FAST)
    run = result.run_dir
    expected = {"config.json", "model.json", "model.weights.h5", "model.keras", "history.csv",
                "loss.png", "accuracy.png", "confusion_matrix.png", "metrics.json"}
    assert expected <= {p.name for p in run.iterdir()}
    metrics = json.loads((run / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "classes", "per_class", "confusion_matrix", "split_sizes",
            "skipped"} <= set(metrics)
    assert metrics["classes"] == ["angry", "happy", "sad", "surprise"]
    assert metrics["split_sizes"] == {"train": 216, "val": 24, "test": 60}
    assert metrics["accuracy"] > 0.6  # chance is 0.25
    assert np.array(metrics["confusion_matrix"]).sum() == 60
    config = json.loads((run / "config.json").read_text())
    assert config["recipe"] == "seed-custom" and config["epochs"] == 4 and config["learning_rate"] == 0.003
    with open(run / "history.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 4


def test_json_h5_and_keras_formats_predict_identically(synthetic_folder, tmp_path):
    # A cosine schedule on an unaugmented model: the model trained is the one saved, minus its optimizer.
    run = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", schedule="cosine",
                **{**FAST, "epochs": 1}).run_dir
    from_json = keras.models.model_from_json((run / "model.json").read_text())
    from_json.load_weights(run / "model.weights.h5")
    native = keras.models.load_model(run / "model.keras")
    assert getattr(native, "optimizer", None) is None  # inference only: no training state to warn about
    x = to_model_input(np.random.default_rng(0).integers(0, 255, (8, 48, 48), dtype=np.uint8), 48)
    np.testing.assert_array_equal(from_json.predict(x, verbose=0), native.predict(x, verbose=0))


def test_frozen_backbone_trains_on_cached_features(synthetic_folder, tmp_path, caplog):
    caplog.set_level("INFO", logger="ferkit")
    result = train(synthetic_folder, recipe="seed-vgg19", weights="none", image_size=32,
                   output=tmp_path / "run", **{**FAST, "epochs": 2})
    assert "features" in caplog.text
    reloaded = keras.models.load_model(result.run_dir / "model.keras")
    assert reloaded.input_shape == (None, 32, 32, 1) and reloaded.output_shape == (None, 4)


@pytest.mark.parametrize("recipe, options", [("seed-custom", {}), ("seed-vgg19", {"weights": "none", "image_size": 32})])
def test_a_mirror_averaged_run_saves_and_tests_the_averaging_model(synthetic_folder, tmp_path, recipe, options):
    """End to end and on a frozen backbone's cached features, whose test faces need the whole model."""
    from ferkit.evaluation import evaluate
    from ferkit.runs import load_keras_model

    result = train(synthetic_folder, recipe=recipe, mirror_average=True, output=tmp_path / "run",
                   **{**FAST, "epochs": 2, **options})
    side = options.get("image_size", 48)
    x = to_model_input(np.random.default_rng(0).integers(0, 255, (6, side, side), dtype=np.uint8), side)
    for path in ("model.keras", "model.json"):
        model, _ = load_keras_model(result.run_dir / path)
        np.testing.assert_allclose(model.predict(x[:, :, ::-1], verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert evaluate(result.run_dir, synthetic_folder)["confusion_matrix"] == result.metrics["confusion_matrix"]


class _StopAfter(keras.callbacks.Callback):
    def __init__(self, epoch):
        super().__init__()
        self.stop_epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.stop_epoch:
            raise KeyboardInterrupt


def test_ctrl_c_keeps_best_and_resume_continues(synthetic_folder, tmp_path):
    run = tmp_path / "run"
    first = train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[_StopAfter(1)], **FAST)
    assert first.interrupted and (run / "model.keras").is_file()
    with open(run / "history.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1"]
    for export in ("model.onnx", "model-int8.onnx"):  # exports of the interrupted weights
        (run / export).write_bytes(b"stale")
    second = train(resume=run, verbose=0)
    assert not second.interrupted
    assert not (run / "model.onnx").exists() and not (run / "model-int8.onnx").exists()  # else they shadow it
    with open(run / "history.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]


class _CtrlCAt(keras.callbacks.Callback):
    """Sends this process a real SIGINT after the first batch of `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current = epoch, -1

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.current == self.epoch and batch == 0:
            os.kill(os.getpid(), signal.SIGINT)


def _held_batches() -> set:
    """Training batches that hold faces, and Keras threads that queue batches (`Worker_<id>`)."""
    gc.collect()
    return ({o for o in gc.get_objects() if isinstance(o, ShuffledBatches) and o.arrays}
            | {t for t in threading.enumerate() if t.name.startswith("Worker_")})


def test_a_real_ctrl_c_stops_after_the_batch_and_keeps_the_run(synthetic_folder, tmp_path):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's handler, in a background job
    held = _held_batches()  # other tests' batches, which they may still hold
    result = train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[_CtrlCAt(1)],
                   **{**FAST, "batch_size": 8})  # more batches than Keras queues ahead (10)
    assert result.interrupted and (run / "model.keras").is_file()
    assert _held_batches() <= held  # else each interrupted run in a notebook keeps its faces
    with open(run / "history.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1"]  # the cut epoch is the last
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C handed back
    second = train(resume=run, verbose=0)  # fit ended normally, yet the backup must survive it
    assert not second.interrupted and not (run / "checkpoints" / "backup").exists()
    assert _held_batches() <= held  # TensorFlow keeps the batches reachable after fit; not the faces
    with open(run / "history.csv") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]


def test_existing_runs_are_not_overwritten_and_finished_runs_not_resumed(synthetic_folder, tmp_path):
    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", output=run, **{**FAST, "epochs": 1})
    with pytest.raises(FerkitError, match="already holds a run"):
        train(synthetic_folder, recipe="seed-custom", output=run, **{**FAST, "epochs": 1})
    with pytest.raises(FerkitError, match="nothing to resume"):
        train(resume=run)


def test_an_existing_run_is_refused_before_the_data_loads(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.training import trainer

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run cut short before its first epoch
    monkeypatch.setattr(trainer, "load_fer", lambda *args, **kwargs: pytest.fail("loaded the data first"))
    with pytest.raises(FerkitError, match="run already holds a run"):
        train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **FAST)


def test_a_config_takes_overrides_but_not_a_recipe(synthetic_folder, tmp_path):
    config = TrainConfig.from_recipe("seed-custom", **{k: v for k, v in FAST.items() if k != "verbose"})
    result = train(synthetic_folder, config, output=tmp_path / "run", epochs=1, verbose=0)
    assert json.loads((result.run_dir / "config.json").read_text())["epochs"] == 1
    with open(result.run_dir / "history.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 1
    with pytest.raises(FerkitError, match="a config or a recipe, not both"):
        train(synthetic_folder, config, recipe="default", output=tmp_path / "other")


def test_techniques_train_end_to_end(synthetic_folder, tmp_path):
    result = train(synthetic_folder, recipe="default", output=tmp_path / "run", erasing=0.3,
                   **{**FAST, "epochs": 2})
    model = keras.models.load_model(result.run_dir / "model.keras").get_layer("mirror_average").inner
    # Saved without the augmentation wrapper and in float32 despite bfloat16 training.
    assert "augmentation" not in [layer.name for layer in model.layers]
    assert all(layer.dtype_policy.name == "float32" for layer in model.layers)
    # The recipe's [model_options] reach the saved network: one Add per residual block.
    blocks = json.loads((result.run_dir / "config.json").read_text())["model_options"]["blocks"]
    assert sum(type(layer).__name__ == "Add" for layer in model.layers) == sum(blocks) > 0


def test_a_bad_model_option_fails_before_any_run_directory(synthetic_folder, tmp_path):
    with pytest.raises(FerkitError, match="no option 'depth'"):
        train(synthetic_folder, recipe="default", output=tmp_path / "run", model_options={"depth": 3}, **FAST)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("monitor", ["val_loss", "val_accuracy"])
def test_the_kept_epoch_is_the_best_by_the_checkpoint_metric(synthetic_folder, tmp_path, monitor):
    from ferkit.evaluation import evaluate

    run = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", checkpoint_on=monitor,
                **FAST).run_dir
    with open(run / "history.csv") as handle:
        rows = list(csv.DictReader(handle))
    pick = min if monitor == "val_loss" else max
    best = pick(rows, key=lambda r: float(r[monitor]))
    kept = evaluate(run, synthetic_folder, split="val")
    assert kept["accuracy"] == pytest.approx(float(best["val_accuracy"]), abs=1e-6)


# TensorFlow made to look not installed: find_spec says None (torch probes it) and imports fail.
_NO_TENSORFLOW = """
import importlib.machinery, sys
class Hide(importlib.machinery.PathFinder):
    @classmethod
    def find_spec(cls, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "tf2onnx"):
            return None
        return super().find_spec(name, path, target)
sys.meta_path = [Hide if f is importlib.machinery.PathFinder else f for f in sys.meta_path]
from ferkit.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("backend", installed("jax", "torch"))
def test_trains_on_another_backend_without_tensorflow(synthetic_folder, tmp_path, backend):
    """The default recipe (fused augmentation, erasing, AdamW + cosine) on another backend, in bfloat16
    (which `auto` would leave off on a CPU without native bfloat16)."""
    env = {**os.environ, "KERAS_BACKEND": backend, "JAX_PLATFORMS": "cpu"}
    run = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", _NO_TENSORFLOW, "train", str(synthetic_folder),
                           "--classes", CLASSES, "--epochs", "2", "--batch-size", "32", "--erasing", "0.3",
                           "--mixed-precision", "on", "--output", str(run)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((run / "config.json").read_text())["recipe"] == "default"
    model = keras.models.load_model(run / "model.keras")  # made on JAX, loaded on this backend
    assert model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0).shape == (2, 4)


def test_class_weights_favour_rare_classes():
    labels = np.array([0] * 90 + [1] * 10)
    balanced = techniques.class_weights(TrainConfig(class_weight="balanced"), labels)
    sqrt = techniques.class_weights(TrainConfig(class_weight="sqrt"), labels)
    assert balanced[1] / balanced[0] == pytest.approx(9)
    assert sqrt[1] / sqrt[0] == pytest.approx(3)
    assert techniques.class_weights(TrainConfig(), labels) is None


def test_teacher_targets_mix_its_probabilities_over_the_runs_classes(tiny_run, caplog):
    """tiny_run knows angry, happy, sad and surprise; a two-class run takes its two columns, renormalised."""
    from ferkit.training import distill

    faces = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    config = TrainConfig(classes="happy,sad", teacher=str(tiny_run), teacher_weight=0.25)
    one_hot = keras.utils.to_categorical([0, 1, 0, 1, 1], 2)
    teacher = distill.teacher_probabilities(config, faces)
    np.testing.assert_allclose(teacher.sum(axis=1), 1, rtol=1e-5)
    np.testing.assert_allclose(distill.soft_targets(config, one_hot, teacher), 0.75 * one_hot + 0.25 * teacher,
                               rtol=1e-5)
    assert distill.teacher_probabilities(TrainConfig(), faces) is None
    assert distill.teacher_probabilities(TrainConfig(teacher="none"), faces) is None  # as `--teacher none`
    assert distill.soft_targets(config, one_hot, None) is one_hot
    with pytest.raises(FerkitError, match="does not know fear"):
        distill.teacher_probabilities(TrainConfig(classes="happy,fear", teacher=str(tiny_run)), faces)
    assert "--split official" not in caplog.text
    distill.teacher_probabilities(TrainConfig(classes="happy,fear", teacher="default", split="random"), faces)
    assert "--split official" in caplog.text  # the bundled model has seen a random split's test faces


def test_a_flipping_teacher_averages_each_face_with_its_mirror_image(tiny_run):
    from ferkit.inference.backends import load_backend
    from ferkit.training import distill

    faces = np.random.default_rng(1).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    backend, x = load_backend(str(tiny_run)), to_model_input(faces, 48)
    config = TrainConfig(classes=backend.info.classes, teacher=str(tiny_run), teacher_flip=True)
    flipped = distill.teacher_probabilities(config, faces)
    np.testing.assert_allclose(flipped, (backend.predict(x) + backend.predict(x[:, :, ::-1])) / 2, atol=1e-5)
    plain = distill.teacher_probabilities(TrainConfig(classes=backend.info.classes, teacher=str(tiny_run)), faces)
    assert not np.allclose(flipped, plain, atol=1e-4)


def test_a_mirror_averaging_teacher_is_not_asked_about_the_mirror_images_again(tiny_run, tmp_path, monkeypatch):
    from ferkit.inference.backends import KerasBackend, load_backend
    from ferkit.models.mirror import mirror_averaged
    from ferkit.training import distill

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_run, teacher)
    for export in teacher.glob("*.onnx"):  # else the run's ONNX file, the network alone, would teach
        export.unlink()
    mirror_averaged(keras.models.load_model(teacher / "model.keras")).save(teacher / "model.keras")
    config = json.loads((teacher / "config.json").read_text())
    (teacher / "config.json").write_text(json.dumps({**config, "mirror_average": True}))
    faces = np.random.default_rng(1).integers(0, 255, (6, 48, 48), dtype=np.uint8)
    alone, x = load_backend(str(tiny_run / "model.keras")), to_model_input(faces, 48)
    expected = (alone.predict(x) + alone.predict(x[:, :, ::-1])) / 2
    batches = []
    predict = KerasBackend.predict
    monkeypatch.setattr(KerasBackend, "predict", lambda self, batch: batches.append(batch) or predict(self, batch))
    probs = distill.teacher_probabilities(TrainConfig(classes=config["classes"], teacher=str(teacher),
                                                      teacher_flip=True), faces)
    assert len(batches) == 1  # one pass: the model itself averages each face with its mirror image
    np.testing.assert_allclose(probs, expected, atol=1e-5)


def test_distillation_trains_end_to_end_with_class_weights(synthetic_folder, tmp_path, tiny_run, caplog):
    caplog.set_level("INFO", logger="ferkit")
    result = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", teacher=str(tiny_run),
                   class_weight="sqrt", **{**FAST, "epochs": 1})
    assert "soft targets for" in caplog.text
    assert json.loads((result.run_dir / "config.json").read_text())["teacher"] == str(tiny_run)
    with pytest.raises(FerkitError, match="model not found"):
        train(synthetic_folder, recipe="seed-custom", output=tmp_path / "bad", teacher=str(tmp_path / "nope"),
              **FAST)
    assert not (tmp_path / "bad").exists()  # said before any run directory is made
    for typo, message in (({"teacher": str(tmp_path / "nope")}, "model not found"), ({"model": "resnot"}, "resnot")):
        with pytest.raises(FerkitError, match=message):  # not "data not found": checked before loading it
            train(tmp_path / "missing.zip", recipe="seed-custom", output=tmp_path / "bad", **{**FAST, **typo})


def test_a_resumed_distillation_keeps_the_targets_it_started_with(synthetic_folder, tmp_path, tiny_run, caplog):
    teacher, run = tmp_path / "teacher", tmp_path / "run"
    shutil.copytree(tiny_run, teacher)
    first = train(synthetic_folder, recipe="seed-custom", output=run, teacher=str(teacher),
                  callbacks=[_StopAfter(0)], **FAST)
    assert first.interrupted
    targets = np.load(run / "checkpoints" / "teacher.npy")
    shutil.rmtree(teacher)  # a teacher gone (or replaced) since the start must not matter
    caplog.set_level("INFO", logger="ferkit")
    second = train(resume=run, verbose=0)
    assert not second.interrupted and "kept from the run's start" in caplog.text
    np.testing.assert_array_equal(np.load(run / "checkpoints" / "teacher.npy"), targets)


def test_kept_targets_that_do_not_fit_the_faces_are_asked_again_and_replaced(tiny_run, tmp_path, caplog):
    from ferkit.runs import RunDir
    from ferkit.training import distill

    run = RunDir(tmp_path / "run")
    run.teacher_targets.parent.mkdir(parents=True)
    np.save(run.teacher_targets, np.full((3, 2), 0.5, "float32"))  # from other faces
    faces = np.random.default_rng(0).integers(0, 255, (5, 48, 48), dtype=np.uint8)
    probs = distill.resumed_or_new(TrainConfig(classes="happy,sad", teacher=str(tiny_run)), faces, run)
    assert probs.shape == (5, 2) and "asking the teacher again" in caplog.text
    distill.keep(run, probs)
    np.testing.assert_array_equal(np.load(run.teacher_targets), probs)


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


def test_recipes_ship_and_resolve():
    assert {"default", "seed-custom", "seed-vgg19", "seed-mobilenetv2"} <= set(list_recipes())
    for name in list_recipes():
        config = TrainConfig.from_recipe(name)
        assert config.recipe == name and config.description
    seed = TrainConfig.from_recipe("seed-vgg19", epochs=3)
    assert seed.epochs == 3 and "disgust" not in seed.classes and seed.split == "random"
    assert load_recipe("seed-custom")["learning_rate"] == 0.001


@pytest.mark.parametrize("overrides, message", [
    ({"recipe": "nope"}, "unknown recipe"),
    ({"epochs": 0}, "epochs"),
    ({"class_weight": "heavy"}, "class_weight"),
    ({"split": "rnadom"}, "split must be one of random, official"),
    ({"checkpoint_on": "accuracy"}, "checkpoint_on"),
    ({"mixed_precision": "bf16"}, "mixed_precision must be one of auto, on, off"),
    ({"mixed_precision": 1}, "mixed_precision must be a string"),
    ({"teacher": "default", "teacher_weight": 0}, "teacher_weight"),
    ({"teacher": "default", "teacher_weight": 1.5}, "teacher_weight"),
    ({"colour": "blue"}, "unknown configuration"),
    ({"learning_rate": "0.01"}, "learning_rate must be a number"),
    ({"epochs": "ten"}, "epochs must be a whole number"),
    ({"epochs": 2.5}, "epochs must be a whole number"),
    ({"augment": "yes"}, "augment must be true or false"),
    ({"early_stopping": -1}, "early_stopping must be >= 0"),
    ({"warmup_epochs": -3}, "warmup_epochs"),
    ({"weight_decay": -0.1}, "weight_decay"),
    ({"label_smoothing": 1.5}, "label_smoothing must be 0 to 0.99"),
    ({"erasing": -1}, "erasing"),
    ({"fractions": (0.9, 0.0, 0.1)}, "fractions must be three positive numbers"),
    ({"fractions": (0.5, 0.5)}, "fractions must be three positive numbers"),
    ({"fractions": 0.8}, "fractions must be three numbers"),
    ({"fractions": ["a", "b", "c"]}, "fractions must be three numbers"),
    ({"model_options": 3}, "model_options must be a table of options"),
    ({"fallback_model_options": [0, 1, 1, 1]}, "fallback_model_options must be a table of options"),
    ({"fallback_image_size": -8}, "fallback_image_size must be >= 0"),
    ({"fallback_image_size": 24}, "model fernet needs fallback_image_size >= 32, got 24"),
    ({"fallback_image_size": 64}, r"fallback_image_size \(64\) is larger than image_size \(48\)"),
])
def test_bad_configuration(overrides, message):
    with pytest.raises(FerkitError, match=message):
        TrainConfig.from_recipe(overrides.pop("recipe", "default"), **overrides)


def test_numpy_numbers_are_numbers():
    config = TrainConfig.from_recipe("default", epochs=np.int64(3), learning_rate=np.float32(0.01))
    assert config.epochs == 3 and config.learning_rate == pytest.approx(0.01)
    assert json.loads(json.dumps(config.to_dict()))["epochs"] == 3  # written to config.json as is
    with pytest.raises(FerkitError, match="augment must be true or false"):
        TrainConfig.from_recipe("default", augment=np.int64(1))


def test_paths_may_name_a_teacher_or_weights(tmp_path):
    config = TrainConfig.from_recipe("default", teacher=tmp_path / "run", weights=tmp_path / "w.h5")
    assert (config.teacher, config.weights) == (str(tmp_path / "run"), str(tmp_path / "w.h5"))


def test_user_recipe_file(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text('model = "custom"\nepochs = 2\n')
    assert TrainConfig.from_recipe(str(path)).recipe == "mine"
    path.write_text("model = [")
    with pytest.raises(FerkitError, match="TOML"):
        TrainConfig.from_recipe(str(path))


def test_recipe_with_a_base_changes_only_its_own_fields(tmp_path):
    (tmp_path / "seed-custom+augment.toml").write_text('base = "seed-custom"\ndescription = "x"\naugment = true\n')
    (tmp_path / "two.toml").write_text('base = "seed-custom+augment.toml"\nlabel_smoothing = 0.1\n')
    config = TrainConfig.from_recipe(str(tmp_path / "two.toml"))
    seed = TrainConfig.from_recipe("seed-custom")
    assert config.recipe == "two" and config.augment and config.label_smoothing == 0.1
    assert (config.model, config.classes, config.learning_rate) == (seed.model, seed.classes, seed.learning_rate)
    (tmp_path / "loop.toml").write_text('base = "loop.toml"\n')
    with pytest.raises(FerkitError, match="its own base"):
        TrainConfig.from_recipe(str(tmp_path / "loop.toml"))
    (tmp_path / "orphan.toml").write_text('base = "nope"\n')
    with pytest.raises(FerkitError, match="unknown recipe 'nope'"):
        TrainConfig.from_recipe(str(tmp_path / "orphan.toml"))


def test_compare_writes_table_and_curves(synthetic_folder, tmp_path):
    from ferkit.training.compare import compare

    ablation = tmp_path / "default-noaug.toml"  # a recipe file is named by its stem
    ablation.write_text('base = "default"\naugment = false\n')
    rows = compare(synthetic_folder, ["seed-custom", str(ablation)], tmp_path / "cmp", epochs=1,
                   classes=CLASSES, split="official", verbose=0)
    assert [r["recipe"] for r in rows] == ["seed-custom", "default-noaug"]
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert table.startswith("Test split: official, classes angry, happy, sad, surprise, seed 0.")
    assert "| seed-custom | custom |" in table and "| default-noaug | fernet |" in table
    assert [r["epochs"] for r in rows] == [1, 1]
    assert "f1_angry" in (tmp_path / "cmp" / "compare.csv").read_text().splitlines()[0]
    assert (tmp_path / "cmp" / "val_curves.png").stat().st_size > 10_000
    for name in ("seed-custom", "default-noaug"):  # both tested on the same faces
        metrics = json.loads((tmp_path / "cmp" / name / "metrics.json").read_text())
        assert metrics["split_sizes"]["test"] == 60 and metrics["classes"] == CLASSES.split(",")


@pytest.mark.parametrize("recipes, files, message", [
    (["seed-custom", "default", "sedd-vgg19"], {}, "unknown recipe 'sedd-vgg19'"),
    (["default", "seed-custom", "default"], {}, "would share a run directory"),
    ([], {}, "no recipes to compare"),
    (["seed-custom", "deep.toml"], {"deep.toml": 'base = "default"\n[model_options]\nblokcs = [1, 1, 1, 1]\n'},
     "has no option 'blokcs'"),
    (["seed-custom", "cropped.toml"], {"cropped.toml": 'base = "default"\n[model_options]\ncrop = 30\n'},
     "crop is the whole number of pixels"),  # a value only the builder knows is wrong
    (["seed-custom", "gated.toml"], {"gated.toml": 'base = "default"\n[fallback_model_options]\nse_ratio = 2\n'},
     "se_ratio is the squeeze's share"),  # in the network that trains only on a slow machine
    (["seed-custom", "taught.toml"], {"taught.toml": 'base = "default"\nteacher = "no/such/run"\n'}, "model not found"),
    (["seed-custom", "tuned.toml"], {"tuned.toml": 'base = "seed-vgg19"\nweights = "no/such.h5"\n'},
     "weights file not found"),
])
def test_compare_checks_every_recipe_before_training_any(synthetic_folder, tmp_path, monkeypatch, recipes, files,
                                                         message):
    from ferkit.training.compare import compare

    monkeypatch.chdir(tmp_path)  # the recipe files' paths are relative
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(FerkitError, match=message):
        compare(synthetic_folder, recipes, tmp_path / "cmp", epochs=1, classes=CLASSES)
    assert not (tmp_path / "cmp").exists()


def test_compare_refuses_a_folder_holding_one_of_its_runs_before_training_any(synthetic_folder, tmp_path,
                                                                              monkeypatch):
    from ferkit.training import compare as module

    (tmp_path / "cmp" / "default" / "checkpoints").mkdir(parents=True)  # a comparison cut short before
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: pytest.fail("trained before checking"))
    with pytest.raises(FerkitError, match="cmp/default already holds a run: give compare another --output"):
        module.compare(synthetic_folder, ["seed-custom", "default"], tmp_path / "cmp", epochs=1, classes=CLASSES)


def test_compare_stops_at_ctrl_c_and_tabulates_what_it_has(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.cli import main
    from ferkit.training import compare as module

    real = module.train
    monkeypatch.setattr(module, "train", lambda *args, **kwargs: real(*args, callbacks=[_StopAfter(0)], **kwargs))
    assert main(["compare", str(synthetic_folder), "--recipes", "seed-custom,default", "--epochs", "2",
                 "--classes", CLASSES, "--split", "official", "--output", str(tmp_path / "cmp")]) == 130
    assert not (tmp_path / "cmp" / "default").exists()  # one Ctrl-C stops the comparison
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| seed-custom (interrupted) | custom |" in table
    with open(tmp_path / "cmp" / "compare.csv") as handle:  # one epoch of two trained
        assert [(r["recipe"], r["interrupted"], r["epochs"]) for r in csv.DictReader(handle)] == [
            ("seed-custom", "True", "1")]


def test_compare_notes_a_default_distilled_on_a_random_split():
    from ferkit.training.compare import _check

    configs, notes = _check(["seed-custom", "default"], {}, Path("cmp"))  # seed-custom's random split for both
    assert [(c.recipe, c.split) for c in configs] == [("seed-custom", "random"), ("default", "random")]
    assert len(notes) == 1 and notes[0].startswith("default: distilled from the bundled model")
    assert _check(["seed-custom", "default"], {"split": "official"}, Path("cmp"))[1] == []


def test_compare_gives_weights_only_to_recipes_that_start_from_pretrained_ones():
    from ferkit.training.compare import _check

    for weights in ("imagenet", "none"):  # custom and fernet have no ImageNet weights to take
        configs, _ = _check(["seed-custom", "seed-vgg19", "default"], {"weights": weights}, Path("cmp"))
        assert [c.weights for c in configs] == ["none", weights, "none"]


def test_compare_says_which_recipe_trained_its_fallback(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.training import budget
    from ferkit.training.compare import compare

    monkeypatch.setattr(budget, "seconds_per_step", lambda *args, **kwargs: 1000.0)  # its own network: too slow
    (tmp_path / "slow.toml").write_text('base = "seed-custom"\ntime_limit = 30\nfallback_image_size = 32\n'
                                        '[fallback_model_options]\nfilters = [8, 16]\n')
    rows = compare(synthetic_folder, ["seed-custom", str(tmp_path / "slow.toml")], tmp_path / "cmp", epochs=1,
                   classes=CLASSES, verbose=0)
    assert [row["fallback"] for row in rows] == ["", '{"filters": [8, 16]} on 32-px faces']  # seed-custom: no limit
    table = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| seed-custom | custom |" in table and "| slow | custom (fallback) |" in table
    assert 'slow: trained its lighter fallback network {"filters": [8, 16]} on 32-px faces' in table


def _gradient_faces(n: int = 16) -> np.ndarray:
    """Faces whose left and right halves differ, so a flip is visible."""
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.float32), (48, 1))
    return np.repeat(ramp[None, :, :, None], n, axis=0)


def test_face_affine_flip_only_mirrors_or_keeps_each_face():
    from ferkit.training.augment import RandomFaceAffine

    faces = _gradient_faces()
    layer = RandomFaceAffine(rotation=0, shift=0, zoom=0, flip=True, seed=3)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))
    kept = np.all(np.abs(out - faces) < 1e-3, axis=(1, 2, 3))
    mirrored = np.all(np.abs(out - faces[:, :, ::-1]) < 1e-3, axis=(1, 2, 3))
    assert np.all(kept | mirrored) and kept.any() and mirrored.any()


def test_face_affine_is_identity_at_inference_and_random_in_training():
    from ferkit.training.augment import RandomFaceAffine

    faces = to_model_input(np.random.default_rng(0).integers(0, 255, (8, 48, 48), dtype=np.uint8), 48)
    layer = RandomFaceAffine(seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(faces)), faces)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))
    assert out.shape == faces.shape and out.min() >= 0 and out.max() <= 255
    changed = np.abs(out - faces).mean(axis=(1, 2, 3)) > 1
    assert changed.all()


def test_face_affine_shift_moves_content_by_at_most_the_limit():
    from ferkit.training.augment import RandomFaceAffine

    faces = np.zeros((32, 48, 48, 1), np.float32)
    faces[:, 20:28, 20:28] = 255  # a bright square in the middle
    layer = RandomFaceAffine(rotation=0, shift=0.1, zoom=0, flip=False, seed=2)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))[..., 0]
    rows = np.array([np.nonzero(o > 127)[0].mean() for o in out])
    cols = np.array([np.nonzero(o > 127)[1].mean() for o in out])
    assert np.abs(rows - 23.5).max() <= 4.8 + 0.5 and np.abs(cols - 23.5).max() <= 4.8 + 0.5
    assert np.abs(cols - 23.5).max() > 1  # it does move
