"""The trainer end to end: a run directory, its saved formats, Ctrl+C and resuming, other backends."""

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

import keras
import numpy as np
import pytest

from conftest import ctrl_c_after, ctrl_c_once_trained, installed
from ferkit.data.preprocess import to_model_input
from ferkit.errors import FerkitError
from ferkit.training import TrainConfig, train
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
    with open(run / "history.csv", encoding="utf-8") as handle:
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
    assert "computed frozen vgg19 features" in caplog.text  # not the warning about random weights
    reloaded = keras.models.load_model(result.run_dir / "model.keras")
    assert reloaded.input_shape == (None, 32, 32, 1) and reloaded.output_shape == (None, 4)


@pytest.mark.parametrize("recipe, options", [("seed-custom", {}), ("seed-vgg19", {"weights": "none", "image_size": 32})])
def test_a_mirror_averaged_run_saves_and_tests_the_averaging_model(synthetic_folder, tmp_path, recipe, options):
    """End to end and on a frozen backbone's cached features, whose test faces need the whole model."""
    from ferkit.evaluation import evaluate
    from ferkit.models.loading import load_keras_model

    result = train(synthetic_folder, recipe=recipe, mirror_average=True, output=tmp_path / "run",
                   **{**FAST, "epochs": 2, **options})
    side = options.get("image_size", 48)
    x = to_model_input(np.random.default_rng(0).integers(0, 255, (6, side, side), dtype=np.uint8), side)
    for path in ("model.keras", "model.json"):
        model, _ = load_keras_model(result.run_dir / path)
        np.testing.assert_allclose(model.predict(x[:, :, ::-1], verbose=0), model.predict(x, verbose=0), atol=1e-6)
    assert evaluate(result.run_dir, synthetic_folder)["confusion_matrix"] == result.metrics["confusion_matrix"]


@pytest.mark.parametrize("precise_bn", [True, False])
def test_precise_bn_saves_statistics_recomputed_on_the_clean_training_faces(synthetic_folder, tmp_path, caplog,
                                                                            precise_bn):
    """Training mode normalises by each batch's own statistics, so recomputing them on the same
    batches gives the saved ones again only where the run saved those, not training's averages."""
    from ferkit.data.sources import load_fer
    from ferkit.data.splits import make_splits, select_classes
    from ferkit.training import batchnorm

    caplog.set_level("INFO", logger="ferkit")
    result = train(synthetic_folder, recipe="seed-custom", augment=True, precise_bn=precise_bn,
                   output=tmp_path / "run", **{**FAST, "epochs": 2})
    data, _ = select_classes(load_fer(synthetic_folder), CLASSES.split(","))
    faces = to_model_input(make_splits(data, "official", (0.8, 0.1, 0.1), seed=0).train.images, 48)
    model = keras.models.load_model(result.run_dir / "model.keras")
    saved = [norm.moving_variance.numpy().copy() for norm in batchnorm.trainable_batchnorms(model)]
    assert batchnorm.recompute(model, batchnorm.batches_of(faces, seed=0)) == 4  # one a block
    again = [norm.moving_variance.numpy() for norm in batchnorm.trainable_batchnorms(model)]
    assert all(np.allclose(a, b, rtol=1e-3) for a, b in zip(saved, again, strict=True)) == precise_bn
    assert ("recomputed the statistics of 4 BatchNorm layers on 216 training faces" in caplog.text) == precise_bn


def test_precise_bn_on_a_frozen_backbone_recomputes_its_head_on_the_features(synthetic_folder, tmp_path, caplog):
    """216 faces make one batch: the head's saved statistics are exactly its features' mean."""
    from ferkit.data.sources import load_fer
    from ferkit.data.splits import make_splits, select_classes
    from ferkit.training import batchnorm

    caplog.set_level("INFO", logger="ferkit")
    result = train(synthetic_folder, recipe="seed-vgg19", weights="none", image_size=32, precise_bn=True,
                   output=tmp_path / "run", **{**FAST, "epochs": 1})
    assert "computed frozen vgg19 features" in caplog.text  # the cached features' path, not end to end
    assert "recomputed the statistics of 1 BatchNorm layer on 216 training faces" in caplog.text
    model = keras.models.load_model(result.run_dir / "model.keras")
    data, _ = select_classes(load_fer(synthetic_folder), CLASSES.split(","))
    faces = to_model_input(make_splits(data, "official", (0.8, 0.1, 0.1), seed=0).train.images, 32)
    features = model.get_layer("backbone").predict(faces, verbose=0).reshape(len(faces), -1)
    (norm,) = batchnorm.trainable_batchnorms(model)
    np.testing.assert_allclose(norm.moving_mean.numpy(), features.mean(0), rtol=1e-3, atol=1e-4)


def test_ctrl_c_keeps_best_and_resume_continues(synthetic_folder, tmp_path):
    run = tmp_path / "run"
    first = train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[ctrl_c_after(1)], **FAST)
    assert first.interrupted and (run / "model.keras").is_file()
    with open(run / "history.csv", encoding="utf-8") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1"]
    for export in ("model.onnx", "model-int8.onnx"):  # exports of the interrupted weights
        (run / export).write_bytes(b"stale")
    with pytest.raises(FerkitError, match="already holds an interrupted run: --resume it"):
        train(synthetic_folder, recipe="seed-custom", output=run, **FAST)
    assert first.metrics["epochs_trained"] == 2
    second = train(resume=run, verbose=0)
    assert not second.interrupted
    assert not (run / "model.onnx").exists() and not (run / "model-int8.onnx").exists()  # else they shadow it
    with open(run / "history.csv", encoding="utf-8") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]
    assert second.metrics["epochs_trained"] == 4  # not the 2 the interrupted session's metrics.json said


def test_ctrl_c_before_the_first_epoch_ends_is_an_interruption_with_nothing_to_resume(synthetic_folder, tmp_path,
                                                                                      caplog):
    """It had said "keeping the best weights so far (resume with --resume RUN)", then failed with an
    error (exit code 2) where --resume finds nothing."""
    import keras

    class CtrlC(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    with caplog.at_level("WARNING", logger="ferkit"), pytest.raises(KeyboardInterrupt):
        train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", callbacks=[CtrlC()], **FAST)
    said = "interrupted before the first epoch finished: nothing was kept, and there is nothing to resume"
    assert said in caplog.text
    assert "--resume" not in caplog.text


def test_a_frozen_backbones_feature_pass_is_announced_and_its_ctrl_c_said(synthetic_folder, tmp_path, caplog,
                                                                           monkeypatch):
    """Six minutes of seed-vgg19's features on a CPU had passed without a word, and a Ctrl-C there
    printed only "interrupted"."""
    import keras

    def ctrl_c(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(keras.Model, "predict", ctrl_c)
    with caplog.at_level("INFO", logger="ferkit"), pytest.raises(KeyboardInterrupt):
        train(synthetic_folder, recipe="seed-vgg19", weights="none", image_size=32, output=tmp_path / "run", **FAST)
    assert "computing the frozen vgg19's features of 300 faces once" in caplog.text
    assert "interrupted before the first epoch finished: nothing was kept" in caplog.text


@pytest.mark.parametrize("row_cut", [False, True])
def test_a_run_killed_while_its_backup_was_written_resumes_from_the_one_before(synthetic_folder, tmp_path, row_cut):
    """The backup, written in place, was cut by the kill: nothing to resume. Now the one before is
    kept, the epoch after it trains again, and its second row in history.csv counts once. A kill
    while that row was written (`row_cut`, before the backup) had ended the resume in a traceback."""
    from ferkit.runs import read_history

    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[ctrl_c_after(1)], **FAST)
    backup = run / "checkpoints" / "backup"
    weights = backup / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[:2000])  # killed mid-write: epoch 2's row is in history.csv
    (backup / "training_metadata.json").write_text('{"epoch": 1, "batch": 0}')  # written after the weights
    history = run / "history.csv"
    if row_cut:
        raw = history.read_bytes()
        last = raw.rstrip().rfind(b"\n") + 1
        history.write_bytes(raw[:last + (len(raw) - last) // 2])  # epoch 2's row cut half way
    second = train(resume=run, verbose=0)
    assert not second.interrupted and second.metrics["epochs_trained"] == 4
    with open(history, encoding="utf-8") as handle:
        rows = [r["epoch"] for r in csv.DictReader(handle)]
    assert rows == ["0", "1", "2", "3"]  # epoch 2's first row left out with the backup it had no part in
    assert read_history(history)["epoch"] == [0, 1, 2, 3]
    lines = history.read_bytes().split(b"\n")[:-1]
    assert all(line.endswith(b"\r") for line in lines)  # CSVLogger's line ends, kept by the repair


class _Killed(BaseException):
    """A SIGKILL: nothing after it runs, no Python clean-up of ferkit's is to be counted on."""


@pytest.mark.parametrize("where", [keras.callbacks.CSVLogger, keras.callbacks.BackupAndRestore,
                                   keras.callbacks.ModelCheckpoint])
def test_a_kill_at_an_epochs_end_resumes_to_the_model_its_history_names(synthetic_folder, tmp_path, monkeypatch,
                                                                         where):
    """Killed right after the checkpoint callbacks' `where` wrote its file for epoch 2, the best so far;
    the resumed session's epoch 2 then does worse, and so does epoch 3. The best weights had been written first: a kill
    before the backup kept them, though the resume trained epoch 2 again, so the model kept was
    none that history.csv and metrics.json name (and a second row of epoch 2 set the best_epoch)."""
    import ferkit.training.callbacks as callbacks
    import ferkit.training.trainer as trainer

    session, weights = [1], {}

    class Record(keras.callbacks.Callback):  # first of all: what each epoch ended with, and its value
        def on_epoch_end(self, epoch, logs=None):
            if session[0] == 2 and epoch >= 2:
                logs["val_loss"], logs["val_accuracy"] = 99.0, 0.0  # the epoch trained again does worse, and on
            else:
                logs["val_loss"], logs["val_accuracy"] = 1.0 - epoch / 10, 0.5  # epoch 2 the best so far
            weights[epoch] = self.model.get_weights()

    class Kill(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if session[0] == 1 and epoch == 2:
                raise _Killed

    def with_kill(config, run, resume):
        found = callbacks.run_callbacks(config, run, resume)
        after = next(i for i, c in enumerate(found) if isinstance(c, where)) + 1
        return [Record(), *found[:after], Kill(), *found[after:]]

    monkeypatch.setattr(trainer, "run_callbacks", with_kill)
    run = tmp_path / "run"
    with pytest.raises(_Killed):
        train(synthetic_folder, recipe="seed-custom", output=run, **FAST)
    session[0] = 2
    result = train(resume=run, verbose=0)
    with open(run / "history.csv", encoding="utf-8") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]
    best = result.metrics["best_epoch"]
    kept = keras.models.load_model(run / "model.keras").get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(kept, weights[best - 1], strict=True))



class _CtrlCAt(keras.callbacks.Callback):
    """Sends this process a real SIGINT after the first batch of `epoch`."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch, self.current, self.batches = epoch, -1, {}  # batches ended in each epoch

    def on_epoch_begin(self, epoch, logs=None):
        self.current = epoch

    def on_train_batch_end(self, batch, logs=None):
        self.batches[self.current] = self.batches.get(self.current, 0) + 1
        if self.current == self.epoch and batch == 0:
            os.kill(os.getpid(), signal.SIGINT)


def _held_batches() -> set:
    """Training batches that hold faces, and Keras threads that queue batches (`Worker_<id>`)."""
    gc.collect()
    return ({o for o in gc.get_objects() if isinstance(o, ShuffledBatches) and o.arrays}
            | {t for t in threading.enumerate() if t.name.startswith("Worker_")})


def test_a_real_ctrl_c_stops_after_the_batch_and_keeps_the_run(synthetic_folder, tmp_path, caplog):
    run = tmp_path / "run"
    before = signal.getsignal(signal.SIGINT)  # SIG_IGN, not Python's handler, in a background job
    held = _held_batches()  # other tests' batches, which they may still hold
    ctrl_c = _CtrlCAt(1)
    result = train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[ctrl_c],
                   **{**FAST, "batch_size": 8})  # more batches than Keras queues ahead (10)
    assert result.interrupted and (run / "model.keras").is_file()
    assert f"(resume with `ferkit train --resume {run}`, or train(resume=...) in Python)" in caplog.text
    assert ctrl_c.batches[0] > 10 and ctrl_c.batches[1] == 1  # stopped after the batch, not the epoch
    assert _held_batches() <= held  # else each interrupted run in a notebook keeps its faces
    with open(run / "history.csv", encoding="utf-8") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1"]  # the cut epoch is the last
    assert signal.getsignal(signal.SIGINT) is before  # Ctrl-C handed back
    second = train(resume=run, verbose=0)  # fit ended normally, yet the backup must survive it
    assert not second.interrupted and not (run / "checkpoints" / "backup").exists()
    assert _held_batches() <= held  # TensorFlow keeps the batches reachable after fit; not the faces
    with open(run / "history.csv", encoding="utf-8") as handle:
        assert [r["epoch"] for r in csv.DictReader(handle)] == ["0", "1", "2", "3"]


def test_early_stopping_counts_on_from_the_history_on_resume(tmp_path):
    """The best epoch the second: with patience 3, a run resumed after epoch 4 stops after one more
    worse epoch, and one resumed after epoch 3 after two, as uninterrupted runs would. The count
    had started afresh: `patience` more epochs."""
    from ferkit.runs import RunDir
    from ferkit.training.callbacks import run_callbacks

    def stopping_after(history, resume=True, worse=(0.55, 0.56, 0.57)):
        run = RunDir(tmp_path)
        run.history.write_text("epoch,val_loss\n" + "".join(f"{i},{v}\n" for i, v in enumerate(history)))
        (stopping,) = [c for c in run_callbacks(TrainConfig(early_stopping=3), run, resume=resume)
                       if isinstance(c, keras.callbacks.EarlyStopping)]
        stopping.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
        stopping.model.stop_training = False  # as fit sets it
        stopping.on_train_begin()
        for more, value in enumerate(worse, 1):
            stopping.on_epoch_end(len(history) + more - 1, {"val_loss": value})
            if stopping.model.stop_training:
                return more
        return None

    assert stopping_after([1.0, 0.5, 0.7, 0.6]) == 1
    assert stopping_after([1.0, 0.5, 0.7]) == 2
    assert stopping_after([1.0, 0.5, 0.7], resume=False) is None  # a new run: its own count


def test_a_run_resumes_though_the_weights_it_started_from_are_gone(tmp_path):
    """Its backup holds every weight of a network trained end to end: the resume had been refused,
    naming --weights, which --resume refuses. A frozen backbone still needs its file."""
    from ferkit.runs import RunDir
    from ferkit.training.trainer import _start_model

    gone = str(tmp_path / "deleted.weights.h5")
    config = TrainConfig.from_recipe("seed-custom", weights=gone)
    assert _start_model(config, RunDir(tmp_path), bfloat16=False).count_params() > 0
    with pytest.raises(FerkitError, match="weights file not found"):  # a new run: the file is what it asks for
        _start_model(config, None, bfloat16=False)
    frozen = TrainConfig.from_recipe("seed-vgg19", weights=gone)
    with pytest.raises(FerkitError, match="frozen backbone starts from .*deleted.weights.h5, which is gone"):
        _start_model(frozen, RunDir(tmp_path), bfloat16=False)


def test_a_second_ctrl_c_waits_while_the_checkpoints_are_written(caplog):
    """Keras writes them in place: a second press there left a cut best.weights.h5 (the best
    weights lost) or a cut backup (no resume). Elsewhere it still stops at once."""
    import signal as signals

    from ferkit.training.callbacks import StopOnCtrlC

    ctrl_c = StopOnCtrlC()
    ctrl_c.set_model(keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)]))
    ctrl_c._handle(signals.SIGTERM, None)  # the first (the CLI hands a SIGTERM on): stop after this batch
    assert ctrl_c.requested and ctrl_c.model.stop_training
    assert "SIGTERM: stopping after this batch" in caplog.text  # named as what it was, not "Ctrl-C"
    ctrl_c.saves_begin().on_epoch_end(0, {})  # the checkpoints are being written
    ctrl_c._handle(signals.SIGINT, None)  # the second: no KeyboardInterrupt now
    assert "once this epoch's checkpoints are written" in caplog.text
    with pytest.raises(KeyboardInterrupt):
        ctrl_c.on_epoch_end(0)  # written: now it stops
    with pytest.raises(KeyboardInterrupt):  # outside the saves, at once
        other = StopOnCtrlC()
        other.set_model(ctrl_c.model)
        other._handle(signals.SIGINT, None)
        other._handle(signals.SIGINT, None)


def test_a_ctrl_c_while_the_trained_run_is_finished_waits_for_it(synthetic_folder, tmp_path, monkeypatch, caplog):
    """A deadline's Ctrl-C (or SIGTERM) during precise BN, the test faces' pass or the saving had
    lost the finished run: on a GPU call, its 35-MB checkpoint came back instead of its model."""
    from ferkit.training.callbacks import StopOnCtrlC

    ctrl_c_once_trained(monkeypatch)
    before = signal.getsignal(signal.SIGINT)
    result = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **{**FAST, "epochs": 1})
    assert not result.interrupted and result.stop_asked and (tmp_path / "run" / "model.keras").is_file()
    assert "Ctrl-C: finishing the run first" in caplog.text
    assert signal.getsignal(signal.SIGINT) is before
    ctrl_c = StopOnCtrlC()
    ctrl_c.finishing()
    try:
        ctrl_c._handle(signal.SIGINT, None)  # the first waits
        with pytest.raises(KeyboardInterrupt):
            ctrl_c._handle(signal.SIGINT, None)  # the second stops at once
    finally:
        ctrl_c.restore()


def test_existing_runs_are_not_overwritten_and_finished_runs_not_resumed(synthetic_folder, tmp_path):
    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", output=run, **{**FAST, "epochs": 1})
    with pytest.raises(FerkitError, match="already holds a finished run: give another --output"):
        train(synthetic_folder, recipe="seed-custom", output=run, **{**FAST, "epochs": 1})
    with pytest.raises(FerkitError, match="nothing to resume"):
        train(resume=run)


def test_an_existing_run_is_refused_before_the_data_loads(synthetic_folder, tmp_path, monkeypatch):
    from ferkit.training import trainer

    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # a run cut short before its first epoch
    monkeypatch.setattr(trainer, "load_fer", lambda *args, **kwargs: pytest.fail("loaded the data first"))
    with pytest.raises(FerkitError, match="run already holds a run stopped before its first epoch ended, with "
                                          "nothing to resume: delete it"):
        train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **FAST)


@pytest.mark.parametrize("kind, message", [
    ("user files", "already holds model.onnx, which the run would replace"),
    ("a file", "it is a file"),
    ("under a file", "is not a writable folder"),
    ("runs a file", r"cannot write a run to runs/seed-custom-\d{8}-\d{6}: runs is not a writable folder"),
    ("empty", r"the output folder's name is empty: give a folder, or none for runs/seed-custom-<timestamp>"),
])
def test_a_folder_of_other_files_or_a_file_is_refused_before_the_data_loads(synthetic_folder, tmp_path,
                                                                            monkeypatch, kind, message):
    from ferkit.training import trainer

    mine = tmp_path / "mymodels"
    monkeypatch.chdir(tmp_path)
    if kind == "runs a file":  # the default output, runs/<recipe>-<timestamp>: checked as early as a given one
        (tmp_path / "runs").write_text("a file")
        mine = None
    elif kind == "empty":  # it had been checked as the current folder, then written to runs/
        mine = ""
    elif kind == "user files":
        mine.mkdir()
        (mine / "model.onnx").write_bytes(b"the user's own model")
    else:
        mine.write_text("a file")
        mine = mine / "run" if kind == "under a file" else mine
    monkeypatch.setattr(trainer, "load_fer", lambda *args, **kwargs: pytest.fail("loaded the data first"))
    with pytest.raises(FerkitError, match=message):
        train(synthetic_folder, recipe="seed-custom", output=mine, **FAST)
    if kind == "user files":
        assert (mine / "model.onnx").read_bytes() == b"the user's own model"
    assert (tmp_path / "runs").is_file() if kind == "runs a file" else not (tmp_path / "runs").exists()


def test_faces_larger_than_the_free_memory_are_refused_before_the_run_folder_is_made(synthetic_folder, tmp_path,
                                                                                   monkeypatch):
    """Refused once the split is known, before the teacher's pass, the probe and the run's folder (a
    retry into the same --output had then been refused as a run stopped before its first epoch). The
    216 training, 24 validation and 60 test faces are held at once, except a frozen backbone's: it
    turns one part at a time into features, so the largest part alone must fit."""
    from ferkit.data import preprocess
    from ferkit.training import distill

    class Reached(Exception):
        pass

    monkeypatch.setattr(preprocess, "free_memory", lambda: int(0.3 * 2 ** 30))
    monkeypatch.setattr(distill, "resumed_or_new", lambda *args: (_ for _ in ()).throw(Reached()))
    with pytest.raises(FerkitError, match=r"^300 faces of 512x512 px take 0.4 GiB as the model's input, more than "
                                          r"the 0.3 GiB of memory free: train on smaller faces \(--image-size\)$"):
        train(synthetic_folder, recipe="default", teacher="none", image_size=512, output=tmp_path / "run",
              classes=CLASSES, split="official", verbose=0)
    assert not (tmp_path / "run").exists()
    with pytest.raises(Reached):  # 216 faces at 512 px: 0.26 GiB
        train(synthetic_folder, recipe="seed-mobilenetv2", weights="none", image_size=512, output=tmp_path / "run",
              classes=CLASSES, split="official", verbose=0)


def test_a_random_frozen_backbone_is_warned_of_once_a_run_and_a_pretrained_one_never(synthetic_folder, tmp_path,
                                                                                     caplog, monkeypatch):
    """The builder had warned of every network built without weights, and a run rebuilds its own so
    (the saved model): every ImageNet run of seed-vgg19 ended by calling its backbone random. A
    notebook's own Keras precision policy is kept too (train had left float32)."""
    import keras

    said = "a frozen backbone without pretrained weights keeps its random features"
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        with caplog.at_level("WARNING", logger="ferkit"):
            first = train(synthetic_folder, recipe="seed-mobilenetv2", weights="none", image_size=32,
                          output=tmp_path / "random", **FAST)
        assert caplog.text.count(said) == 1
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    finally:
        keras.mixed_precision.set_global_policy("float32")
    caplog.clear()
    from ferkit.models import transfer

    monkeypatch.setattr(transfer, "_warned", set(), raising=False)  # a fresh process, as each CLI run is
    with caplog.at_level("WARNING", logger="ferkit"):  # a run's own weights, as ImageNet's would be: pretrained
        train(synthetic_folder, recipe="seed-mobilenetv2", weights=str(first.run_dir / "model.keras"), image_size=32,
              output=tmp_path / "pretrained", **FAST)
    assert said not in caplog.text


def test_a_run_records_its_data_absolute_so_resume_works_from_anywhere(synthetic_folder, monkeypatch):
    from ferkit.training import trainer

    monkeypatch.chdir(synthetic_folder.parent)
    config, _ = trainer._resolve(synthetic_folder.name, None, None, None, {"recipe": "seed-custom"})
    assert config.data == str(synthetic_folder.absolute())
    given = TrainConfig.from_recipe("seed-custom")  # a config's own data field (Python API, a recipe's `data`)
    given.data = synthetic_folder.name
    config, _ = trainer._resolve(None, given, None, None, {})
    assert config.data == str(synthetic_folder.absolute())


def test_a_run_without_data_says_so_before_anything_else():
    with pytest.raises(FerkitError, match="no training data given"):
        train(recipe="seed-custom")


def test_a_run_records_its_weights_and_teacher_files_absolute(synthetic_folder, tmp_path, monkeypatch):
    """A resume from another folder rebuilt the network from `r_a/model.weights.h5` and failed."""
    from ferkit.training import trainer

    monkeypatch.chdir(tmp_path)
    (tmp_path / "w.weights.h5").write_bytes(b"")
    (tmp_path / "teacher").mkdir()
    config, _ = trainer._resolve(synthetic_folder, None, None, None,
                                 {"recipe": "seed-custom", "weights": "w.weights.h5", "teacher": "teacher"})
    assert (config.weights, config.teacher) == (str(tmp_path / "w.weights.h5"), str(tmp_path / "teacher"))
    named, _ = trainer._resolve(synthetic_folder, None, None, None, {"recipe": "default"})
    assert (named.weights, named.teacher) == ("none", "default")  # names, not files


def test_overrides_on_a_config_drop_its_stale_fallback_as_on_a_recipe(synthetic_folder):
    from ferkit.training import trainer

    config, _ = trainer._resolve(synthetic_folder, TrainConfig.from_recipe("default"), None, None,
                                 {"image_size": 32})  # was "fallback_image_size (40) is larger than image_size (32)"
    assert config.fallback_image_size == 0 and config.model_options == {"blocks": [0, 1, 2, 2]}
    other, _ = trainer._resolve(synthetic_folder, TrainConfig.from_recipe("default"), None, None, {"model": "custom"})
    assert other.model_options == {} and other.fallback_model_options == {}


def test_a_save_cut_short_leaves_no_model_and_the_backup_to_resume(synthetic_folder, tmp_path, monkeypatch):
    """A kill or a full disk in model.save left a cut-short model.keras, the backup already gone:
    the folder read as a finished run, and could neither be loaded nor resumed."""
    run, save = tmp_path / "run", keras.Model.save

    def full_disk(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PK\x03\x04")  # the start of a zip, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(keras.Model, "save", full_disk)
    with pytest.raises(OSError):
        train(synthetic_folder, recipe="seed-custom", output=run, **FAST)
    assert not (run / "model.keras").exists() and (run / "checkpoints" / "backup").is_dir()
    assert not [p.name for p in run.iterdir() if ".part." in p.name]
    monkeypatch.setattr(keras.Model, "save", save)
    resumed = train(resume=run, verbose=0)
    assert not resumed.interrupted and (run / "model.keras").is_file() and not (run / "checkpoints" / "backup").exists()


def test_a_config_takes_overrides_but_not_a_recipe(synthetic_folder, tmp_path):
    config = TrainConfig.from_recipe("seed-custom", **{k: v for k, v in FAST.items() if k != "verbose"})
    result = train(synthetic_folder, config, output=tmp_path / "run", epochs=1, verbose=0)
    assert json.loads((result.run_dir / "config.json").read_text())["epochs"] == 1
    with open(result.run_dir / "history.csv", encoding="utf-8") as handle:
        assert len(list(csv.DictReader(handle))) == 1
    with pytest.raises(FerkitError, match="a config or a recipe, not both"):
        train(synthetic_folder, config, recipe="default", output=tmp_path / "other")


def test_a_config_built_in_python_is_not_said_to_be_the_default_recipe(synthetic_folder, tmp_path, monkeypatch):
    """TrainConfig()'s fields are the seed CNN's, not the default recipe's: its run had been named
    runs/default-* and its config.json said recipe "default"."""
    monkeypatch.chdir(tmp_path)
    config = TrainConfig(classes=CLASSES, split="official", epochs=1, batch_size=32)
    result = train(synthetic_folder, config, verbose=0)
    assert result.run_dir.parent.name == "runs" and result.run_dir.name.startswith("train-")
    assert json.loads((result.run_dir / "config.json").read_text())["recipe"] == ""
    assert TrainConfig.from_recipe("default").run_name == "default"


@pytest.mark.parametrize("field, value, message", [
    ("seed", -1, "seed must be 0 to 4294967295, got -1"),  # had been numpy's ValueError
    ("epochs", np.int64(0), "epochs must be a positive integer"),
    ("label_smoothing", 2.0, "label_smoothing must be 0 to 0.99"),
])
def test_a_config_changed_after_it_was_made_is_checked_again(synthetic_folder, tmp_path, field, value, message):
    config = TrainConfig.from_recipe("seed-custom", **{k: v for k, v in FAST.items() if k != "verbose"})
    setattr(config, field, value)
    with pytest.raises(FerkitError, match=message):
        train(synthetic_folder, config, output=tmp_path / "run", verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_config_changed_after_it_was_made_trains_as_one_made_so(synthetic_folder, tmp_path):
    """Its fields as construction makes them: numpy's numbers had failed config.json's writing after
    the data loaded (leaving a run directory to delete), classes as a string had read as letters,
    and a list of them had kept the order given, not the one every run of those classes shares."""
    config = TrainConfig.from_recipe("seed-custom", **{k: v for k, v in FAST.items() if k != "verbose"})
    config.epochs, config.learning_rate = np.int64(1), np.float32(0.003)
    config.classes = ["surprise", "angry", "sad", "happy"]
    result = train(synthetic_folder, config, output=tmp_path / "run", verbose=0)
    saved = json.loads((result.run_dir / "config.json").read_text())
    assert saved["epochs"] == 1 and saved["classes"] == result.metrics["classes"] == CLASSES.split(",")
    assert config.data == ""  # the caller's config is not changed under it
    config.classes = "angry,happy"
    assert train(synthetic_folder, config, output=tmp_path / "two", verbose=0).metrics["classes"] == ["angry", "happy"]


def test_techniques_train_end_to_end(synthetic_folder, tmp_path):
    result = train(synthetic_folder, recipe="default", output=tmp_path / "run", erasing=0.3,
                   mixed_precision="on", **{**FAST, "epochs": 2})  # "on": bfloat16 on any CPU
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
    with open(run / "history.csv", encoding="utf-8") as handle:
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
    assert "recomputed the statistics of 14 BatchNorm layers" in done.stderr  # precise BN, on that backend
    assert json.loads((run / "config.json").read_text())["recipe"] == "default"
    model = keras.models.load_model(run / "model.keras")  # made on JAX, loaded on this backend
    assert model.predict(np.zeros((2, 48, 48, 1), "float32"), verbose=0).shape == (2, 4)


def test_distillation_trains_end_to_end_with_class_weights(synthetic_folder, tmp_path, tiny_run, caplog,
                                                           monkeypatch):
    """The teacher's soft targets and the class weights both reach the batches trained on."""
    from ferkit.training import trainer

    for path in sorted((synthetic_folder / "train" / "surprise").iterdir())[:40]:  # surprise the rare class
        path.unlink()
    given = []
    monkeypatch.setattr(trainer, "ShuffledBatches", lambda x, y, weights, **kw: given.append((y, weights)) or
                        ShuffledBatches(x, y, weights, **kw))
    caplog.set_level("INFO", logger="ferkit")
    result = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", teacher=str(tiny_run),
                   class_weight="sqrt", **{**FAST, "epochs": 1})
    assert "soft targets for" in caplog.text
    (targets, weights), = given
    labels = targets.argmax(axis=1)  # the label keeps more than half of each target (teacher_weight 0.5)
    assert not np.isin(targets, (0.0, 1.0)).all()  # soft, not one-hot
    assert weights[labels == 3].min() > weights[labels != 3].max()  # surprise weighs more
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
                  callbacks=[ctrl_c_after(0)], **FAST)
    assert first.interrupted
    targets = np.load(run / "checkpoints" / "teacher.npy")
    shutil.rmtree(teacher)  # a teacher gone (or replaced) since the start must not matter
    caplog.set_level("INFO", logger="ferkit")
    second = train(resume=run, verbose=0)
    assert not second.interrupted and "kept from the run's start" in caplog.text
    np.testing.assert_array_equal(np.load(run / "checkpoints" / "teacher.npy"), targets)


def test_a_run_whose_loss_becomes_nan_is_an_error_not_a_score(synthetic_folder, tmp_path):
    """At a learning rate far too high every weight turns NaN, the network then labels each face
    with the first class, and that scored like a poor model's accuracy with exit code 0."""
    with pytest.raises(FerkitError, match=r"loss became NaN in epoch 1: training diverged.*lower "
                                          r"--learning-rate \(this run's: 1e\+30\)"):
        train(synthetic_folder, recipe="seed-custom", classes="angry,happy,sad,surprise", split="official",
              epochs=2, learning_rate=1e30, output=tmp_path / "run", verbose=0)


@pytest.mark.parametrize("last_step", [False, True])
def test_a_diverged_epoch_is_never_kept_as_the_best_by_val_accuracy(tmp_path, caplog, capsys, last_step):
    """A NaN network labels every face with the first class: where that class is most of the
    validation faces, its val_accuracy beat a finite but poor first epoch, the checkpoint kept the
    NaN weights, and the run ended in "no earlier epoch is worth keeping", with a backup of NaN
    weights for --resume. The weights are made NaN in epoch 2 (as a too-high learning rate would),
    at its first step, or by its last, whose loss was computed before: a finite training loss."""
    from conftest import synthetic_faces, write_folder
    from ferkit.cli import main

    images, labels = [], []
    for name, count in (("angry", 150), ("happy", 45), ("sad", 45)):
        more = synthetic_faces((name,), count, seed=len(name))
        images, labels = images + more[0], labels + more[1]
    write_folder(tmp_path / "syn", images, labels, "train", "Training")
    data = write_folder(tmp_path / "syn", *synthetic_faces(("angry", "happy", "sad"), 10, seed=1), "test", "PublicTest")

    class Diverge(keras.callbacks.Callback):
        epoch = 0

        def last(self):
            return [layer for layer in self.model.layers if isinstance(layer, keras.layers.Dense)][-1]

        def on_train_begin(self, logs=None):  # epoch 1 never says angry: finite, and below angry's share
            self.last().bias.assign(np.array([-8.0, 4.0, 4.0], "float32"))

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            if self.epoch == 1 and batch == 0 and not last_step:
                self.last().kernel.assign(np.full(self.last().kernel.shape, np.nan, "float32"))

        def on_train_batch_end(self, batch, logs=None):
            if self.epoch == 1 and batch == self.params["steps"] - 1 and last_step:
                self.last().kernel.assign(np.full(self.last().kernel.shape, np.nan, "float32"))

    caplog.set_level("WARNING", logger="ferkit")
    result = train(data, recipe="seed-custom", classes="angry,happy,sad", split="official", epochs=3,
                   batch_size=32, learning_rate=1e-6, checkpoint_on="val_accuracy", output=tmp_path / "run",
                   verbose=0, callbacks=[Diverge()])
    assert "loss became NaN in epoch 2: stopped there, keeping the best earlier epoch's" in caplog.text
    assert result.metrics["best_epoch"] == 1 and result.metrics["epochs_trained"] == 2
    assert json.loads((result.run_dir / "metrics.json").read_text())["diverged"] == 2
    config = json.loads((result.run_dir / "config.json").read_text())
    (result.run_dir / "config.json").write_text(json.dumps({**config, "time_limit": 30}))  # one could have
    assert main(["info", "--model", str(result.run_dir)]) == 0  # not "2 of at most 3": no limit ended it
    assert ", 2 of 3 epochs (diverged in epoch 2), kept epoch 1" in capsys.readouterr().out
    model = keras.models.load_model(result.run_dir / "model.keras")
    assert all(np.isfinite(w).all() for w in model.get_weights())
    assert not (result.run_dir / "checkpoints" / "backup").exists()  # finished: nothing to resume


def test_the_log_names_the_classes_left_out(synthetic_folder, tmp_path, caplog):
    caplog.set_level("INFO", logger="ferkit")
    train(synthetic_folder, recipe="seed-custom", classes="angry,happy", split="official", epochs=1,
          output=tmp_path / "run", verbose=0)
    assert "left out 150 faces of classes not in this run: sad (75), surprise (75)" in caplog.text


def test_a_class_without_training_faces_is_an_error_before_training(synthetic_folder, tmp_path):
    """Its faces all under test/: the model could never predict it, and every one would count wrong."""
    shutil.rmtree(synthetic_folder / "train" / "surprise")
    with pytest.raises(FerkitError, match=r"no training faces of surprise \(official split.*leave it out with --classes"):
        train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **FAST)
    assert not (tmp_path / "run").exists()


def test_a_resume_finds_moved_data_where_it_is_told_and_refuses_other_faces(synthetic_folder, tmp_path):
    from conftest import synthetic_faces, write_folder

    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[ctrl_c_after(1)], **FAST)
    assert json.loads((run / "checkpoints" / "split.json").read_text())["sizes"] == {"train": 216, "val": 24,
                                                                                      "test": 60}
    moved = shutil.move(synthetic_folder, tmp_path / "moved")
    with pytest.raises(FerkitError, match=f"the data {run} trained on, {synthetic_folder}, is not there any more: "
                                          "give it where it is now"):
        train(resume=run, verbose=0)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "data": ""}))  # "" had read the current folder
    with pytest.raises(FerkitError, match=f"{run}'s config.json names no data: give it"):
        train(resume=run, verbose=0)
    (run / "config.json").write_text(json.dumps(config))
    changed = shutil.copytree(moved, tmp_path / "changed")
    images, labels = synthetic_faces(("happy",), 10, seed=5)
    write_folder(changed, images, labels, "train", "Training_extra")  # ten faces more: another split
    with pytest.raises(FerkitError, match=r"does not split into the faces .* started with \(train/val/test "
                                          r"216/24/60 then, 225/25/60 now\)"):
        train(changed, resume=run, verbose=0)
    kept = (run / "checkpoints" / "split.json").read_text()
    (run / "checkpoints" / "split.json").write_text("{cut short")
    with pytest.raises(FerkitError, match="split.json is damaged: .* delete it to resume without the check"):
        train(moved, resume=run, verbose=0)
    before_parts = {key: value for key, value in json.loads(kept).items() if key != "parts"}
    (run / "checkpoints" / "split.json").write_text(json.dumps(before_parts))  # as ferkit wrote it before session 46
    assert not train(moved, resume=run, verbose=0).interrupted  # the same faces somewhere else
    assert json.loads((run / "config.json").read_text())["data"] == str(moved)  # and found there from now on


@pytest.mark.parametrize("verbose, configured, told", [(None, "", True), (2, "", True), (0, "", False),
                                                       (None, "handler", False), (None, "level", False)])
def test_train_from_python_gives_its_account_where_no_logging_is_set_up(tmp_path, monkeypatch, capsys, verbose,
                                                                         configured, told):
    """ferkit speaks at INFO, which Python keeps silent until logging is set up: from a notebook,
    train() had said no word of the faces it loaded, the classes it left out or the time limit's
    plan. verbose=0 keeps it quiet, and an application's own logging (a handler, or a level set on
    ferkit's logger) is left as it is."""
    import logging

    from conftest import synthetic_faces, write_folder

    images, labels = synthetic_faces(("fear", "neutral"), 5)
    data = write_folder(tmp_path / "data", images, labels, "test", prefix="PublicTest")  # fails after loading
    monkeypatch.setattr(logging.root, "handlers", [logging.NullHandler()] if configured == "handler" else [])
    if configured == "level":
        monkeypatch.setattr(logging.getLogger("ferkit"), "level", logging.WARNING)
    with pytest.raises(FerkitError, match="none of its Training part"):
        train(data, recipe="seed-custom", classes="fear,neutral", split="official", output=tmp_path / "run",
              verbose=verbose)
    assert ("loaded 10 faces" in capsys.readouterr().err) == told
    assert not logging.getLogger("ferkit").handlers  # nothing left behind


def test_calls_at_once_share_one_account_handler_kept_until_the_last_ends(monkeypatch, capsys):
    """Each call had attached its own handler (every line twice) and the first to end removed it from
    under the others (their last lines lost)."""
    import logging

    from ferkit.account import tells_its_account

    monkeypatch.setattr(logging.root, "handlers", [])
    log, second_started, first_ended = logging.getLogger("ferkit"), threading.Event(), threading.Event()

    @tells_its_account
    def work(name, verbose=None):
        log.info("%s begins", name)
        if name == "first":
            second_started.wait(10)
        else:
            second_started.set()
            first_ended.wait(10)
        log.info("%s ends", name)

    first = threading.Thread(target=lambda: (work("first"), first_ended.set()))
    second = threading.Thread(target=work, args=("second",))
    first.start()
    second.start()
    first.join(20)
    second.join(20)
    err = capsys.readouterr().err
    assert [err.count(f"{name} {when}") for name in ("first", "second") for when in ("begins", "ends")] == [1] * 4
    assert not log.handlers and log.level == logging.NOTSET


def test_the_faces_of_each_class_are_counted_and_a_class_of_few_is_warned_of(tmp_path, caplog):
    """Only totals were said: a class read from a misnamed folder, or one of a single training face,
    went unnoticed."""
    from conftest import synthetic_faces, write_folder
    from ferkit.training.trainer import _prepare_data

    images, labels = synthetic_faces(("fear", "happy"), 40)
    write_folder(tmp_path, images[:45], labels[:45], "train")  # 40 fear faces, 5 happy ones
    write_folder(tmp_path, images[:42], labels[:42], "test", prefix="PublicTest")
    extra, names = synthetic_faces(("sad",), 3)
    write_folder(tmp_path, extra, names, "train")
    caplog.set_level("INFO", logger="ferkit")
    _prepare_data(TrainConfig.from_recipe("seed-custom", data=str(tmp_path), classes="fear,happy", split="official",
                                          drop_repeats=False))
    assert "left out 3 faces of classes not in this run: sad (3)" in caplog.text
    assert "faces per class, train/val/test: fear 36/4/40, happy 4/1/2" in caplog.text
    assert "few training faces of happy (4): the model will hardly learn to tell it apart" in caplog.text


def test_a_run_writes_each_test_faces_prediction_and_its_most_confident_mistakes(tiny_run):
    with open(tiny_run / "predictions.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    metrics = json.loads((tiny_run / "metrics.json").read_text(encoding="utf-8"))
    assert len(rows) == metrics["split_sizes"]["test"]
    assert sum(int(row["correct"]) for row in rows) / len(rows) == pytest.approx(metrics["accuracy"])
    assert all((tiny_run.parent / "data" / row["face"]).is_file() for row in rows)  # angry/Training_00003.png
    assert [row["true"] for row in rows] == [row["face"].split("/")[0] for row in rows]
    assert (tiny_run / "mistakes.png").stat().st_size > 5_000


def test_history_records_the_learning_rate_each_epoch_ended_at(synthetic_folder, tmp_path):
    """The warm-up and cosine decay, to be seen: at the peak when the one warm-up epoch ends, then down."""
    run = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", schedule="cosine", warmup_epochs=1,
                **{**FAST, "epochs": 4}).run_dir
    with open(run / "history.csv", encoding="utf-8") as handle:
        rates = [float(row["learning_rate"]) for row in csv.DictReader(handle)]
    peak = json.loads((run / "config.json").read_text(encoding="utf-8"))["learning_rate"]
    assert len(rates) == 4 and rates[0] == pytest.approx(peak, rel=1e-3)
    assert rates == sorted(rates, reverse=True) and rates[1] < rates[0] and rates[-1] < peak / 10


def test_a_run_begun_without_the_learning_rate_column_resumes_without_it(synthetic_folder, tmp_path):
    """A run from before the column: appended rows as wide as its header, which a later resume reads."""
    run = tmp_path / "run"
    train(synthetic_folder, recipe="seed-custom", output=run, callbacks=[ctrl_c_after(0)], **FAST)
    with open(run / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    column = rows[0].index("learning_rate")
    with open(run / "history.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([row[:column] + row[column + 1:] for row in rows])
    train(resume=run, verbose=0)
    with open(run / "history.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    assert "learning_rate" not in rows[0] and len(rows) == 1 + FAST["epochs"]
    assert {len(row) for row in rows} == {len(rows[0])}


def test_a_run_on_a_share_of_the_training_faces_is_tested_on_all_the_test_faces(synthetic_folder, tmp_path):
    full = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "full", **{**FAST, "epochs": 1})
    half = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "half", train_fraction=0.5,
                 **{**FAST, "epochs": 1})
    sizes = [run.metrics["split_sizes"] for run in (full, half)]
    assert sizes[1]["train"] == sizes[0]["train"] // 2 and sizes[1]["test"] == sizes[0]["test"] == 60
    assert sizes[1]["val"] == sizes[0]["val"]
    assert "; training part cut to 0.5 of its faces" in half.metrics["split"]
    assert json.loads((half.run_dir / "config.json").read_text(encoding="utf-8"))["train_fraction"] == 0.5


def test_metrics_give_the_saved_models_validation_accuracy_beside_the_curves(synthetic_folder, tmp_path):
    """Without precise BN or mirror-averaging the saved model is the kept epoch's: the same score as
    its curve; with them (the default) it is its own, and the accuracy plot marks it."""
    from ferkit.data.sources import load_fer
    from ferkit.data.splits import make_splits, select_classes
    from ferkit.models.loading import load_keras_model
    from ferkit.runs import read_history

    plain = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "plain", **FAST)
    history = read_history(plain.run_dir / "history.csv")
    kept = plain.metrics["best_epoch"]
    assert plain.metrics["val_accuracy"] == pytest.approx(history["val_accuracy"][kept - 1], abs=1e-6)
    mirrored = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "mirrored", mirror_average=True,
                     **FAST)
    val = make_splits(select_classes(load_fer(synthetic_folder), CLASSES.split(","))[0], "official", seed=0).val
    probs = load_keras_model(mirrored.run_dir)[0].predict(to_model_input(val.images, 48), verbose=0)
    assert mirrored.metrics["val_accuracy"] == pytest.approx(float(np.mean(probs.argmax(1) == val.labels)))
    assert json.loads((mirrored.run_dir / "metrics.json").read_text(encoding="utf-8"))["val_accuracy"] == \
        mirrored.metrics["val_accuracy"]



def test_a_report_that_cannot_be_written_costs_no_run(synthetic_folder, tmp_path, monkeypatch, caplog):
    """predictions.csv open in a program that locks it, or a full disk: the model and metrics are saved."""
    from ferkit.training import trainer

    def locked(run, *args, **kwargs):
        raise PermissionError(f"[Errno 13] Permission denied: '{run.predictions}'")

    monkeypatch.setattr(trainer, "write_predictions", locked)
    result = train(synthetic_folder, recipe="seed-custom", output=tmp_path / "run", **{**FAST, "epochs": 1})
    assert (result.run_dir / "model.keras").is_file() and (result.run_dir / "metrics.json").is_file()
    assert not (result.run_dir / "checkpoints" / "backup").exists()  # finished, nothing to resume
    assert "the run is saved, but its predictions.csv or mistakes.png could not be written" in caplog.text
