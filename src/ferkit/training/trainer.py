"""`train`: from a FER2013 source and a recipe to a finished run directory."""

from __future__ import annotations

import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from ferkit.data.preprocess import check_fits_memory, to_model_input
from ferkit.data.sources import describe_skipped, load_fer
from ferkit.data.splits import Splits, make_splits, repeats_training, select_classes, train_share
from ferkit.errors import FerkitError
from ferkit.evaluation.metrics import classification_metrics, format_metrics, warn_if_one_label
from ferkit.evaluation.report import write_history_plots, write_metrics, write_predictions
from ferkit.models._blocks import keras_weights_arg
from ferkit.recipes import without_stale_fallback
from ferkit.runs import RunDir, output_folder, replacing, write_json
from ferkit.training import batchnorm, budget, distill, precision, techniques
from ferkit.account import tells_its_account
from ferkit.training.batches import ShuffledBatches
from ferkit.training.callbacks import StopOnCtrlC, StopOnNaN, run_callbacks
from ferkit.training.config import DEFAULT_RECIPE, TrainConfig
from ferkit.training.features import frozen_backbone
from ferkit.training.networks import (build_model, check_fallback, inference_model, keeps_precision_policy,
                                      lighter_if_slow, recompute_batchnorm, uses_features, warn_if_random_frozen)

log = logging.getLogger("ferkit")


FEW_TRAINING_FACES = 10  # FER2013's rarest class, disgust, has 436
NOTHING_KEPT = "interrupted before the first epoch finished: nothing was kept, and there is nothing to resume"


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    interrupted: bool  # Ctrl-C stopped training early; the best weights so far were kept
    minutes: float
    # A Ctrl-C (or SIGTERM) came once training had ended: the run was finished and saved whole, and
    # its caller stops too (compare trains no further recipe, the CLI exits 130)
    stop_asked: bool = False


@tells_its_account
@keeps_precision_policy
def train(data: str | Path | None = None, config: TrainConfig | None = None, *,
          output: str | Path | None = None, resume: str | Path | None = None,
          verbose: int | None = None, callbacks: list[keras.callbacks.Callback] | None = None,
          **overrides: Any) -> TrainResult:
    """Train a model on FER2013 `data` and write a run directory.

    `config` or a recipe name (default: default), with field overrides (e.g. ``recipe="seed-custom",
    epochs=5``), says what to train; an override of None leaves the recipe's value (``teacher="none"``,
    not None, trains without a teacher). `resume` continues an interrupted run directory from its last
    completed epoch, with its own configuration and nothing else. Extra Keras `callbacks`
    (TensorBoard, ...) join ferkit's.
    """
    started = time.monotonic()  # a --time-limit counts from here, data loading included
    config, run = _resolve(data, config, resume, output, overrides)
    if run is None:  # now, not after minutes of loading and the teacher's pass (runs/ too, where none is given)
        RunDir(output_folder(output, config.run_name)).check_free()
    keras.utils.set_random_seed(config.seed)
    bfloat16 = precision.use_bfloat16(config.mixed_precision)
    precision.warn_if_onednn_missed()
    model = _start_model(config, run, bfloat16)  # a typo here fails before the data loads
    warn_if_random_frozen(config, model)
    check_fallback(config, bfloat16)  # and one in the fallback's, even on a machine that never trains it
    distill.check_teacher(config, run)
    splits, skipped, left_out = _prepare_data(config)
    sizes = splits.sizes().values()  # the three parts are held at once; a frozen backbone's one at a time
    check_fits_memory(max(sizes) if uses_features(model, config) else sum(sizes), config.image_size,
                      ": train on smaller faces (--image-size)")
    if run is not None:
        run.check_same_faces(splits.fingerprint(), moved=data is not None)
    teacher = distill.resumed_or_new(config, splits.train.images, run)
    if run is None:  # a resumed run keeps the network it started with
        config, model = lighter_if_slow(config, model, splits, started, bfloat16)
        run = RunDir.create(output, config.run_name)  # only once data, model and teacher are known good
        write_json(run.split_fingerprint, splits.fingerprint())  # what a resume checks
    distill.keep(run, teacher)
    write_json(run.config, config.to_dict())
    log.info("run directory: %s", run.path)

    verbose = verbose if verbose is not None else (1 if sys.stdout.isatty() else 2)
    fit = _fit_on_features if uses_features(model, config) else _fit_end_to_end
    ctrl_c = StopOnCtrlC()  # from the first batch until the run is saved
    fit_options = {"resume": resume is not None, "verbose": verbose, "callbacks": callbacks or [],
                   "started": started, "teacher": teacher, "ctrl_c": ctrl_c}
    try:
        model, scores, interrupted, diverged = fit(model, splits, config, run, fit_options)
        probs = scores["test"]
        repeats = repeats_training(splits.test, splits.train)
        # data loading included, to the test faces scored; a resumed run's since its resume (info, compare)
        minutes = (time.monotonic() - started) / 60
        metrics = classification_metrics(splits.test.labels, probs, config.classes, repeats=repeats)
        metrics.update(split=splits.description, split_sizes=splits.sizes(),
                       skipped={"unreadable_or_bad": dict(skipped), "other_classes": left_out},
                       interrupted=interrupted, best_epoch=run.best_epoch(config.checkpoint_on)[0],
                       epochs_trained=run.history_rows(), diverged=diverged,
                       # the saved model's (precise BN, mirror-averaged), above the curve's at the kept epoch
                       val_accuracy=float(np.mean(scores["val"].argmax(axis=1) == splits.val.labels)),
                       train_minutes=round(minutes, 2))
        _save(model, run, metrics)
        _report_each_face(run, splits, probs, repeats, config)
    finally:
        ctrl_c.restore()
    if not interrupted:  # finished and saved (all epochs, time limit or early stopping): nothing left to resume
        shutil.rmtree(run.backup, ignore_errors=True)
    log.info("test split: %s", format_metrics(metrics))
    warn_if_one_label(metrics)
    log.info("finished in %.1f min; run directory %s", minutes, run.path)
    if config.time_limit and minutes > config.time_limit:  # one epoch trains whatever the limit: said, not hidden
        log.warning("the run took %.1f min, over its time limit of %g: %s", minutes, config.time_limit,
                    "even its first epoch did not fit in it" if (run.history_rows() or 0) <= 1
                    else "its last epochs ran slower than those before them")
    return TrainResult(run.path, metrics, interrupted, minutes, ctrl_c.asked_while_finishing)


def _start_model(config: TrainConfig, resumed: RunDir | None, bfloat16: bool) -> keras.Model:
    """The network with the weights it starts from. A resumed run's backup holds every weight of a
    network trained end to end, so the file it started from is not read again: gone or overwritten,
    it had refused the resume, naming --weights, which --resume refuses. A frozen backbone's
    weights are not in the backup: read from that file again."""
    if resumed is None:
        return build_model(config, config.weights, bfloat16)
    model, path = build_model(config, "none", bfloat16), keras_weights_arg(config.weights)
    if path is None or not uses_features(model, config):
        return model
    if path != "imagenet" and not Path(path).is_file():
        raise FerkitError(f"this run's frozen backbone starts from {config.weights}, which is gone: put it "
                          "back to resume")
    return build_model(config, config.weights, bfloat16)


def _resolve(data, config: TrainConfig | None, resume, output, overrides) -> tuple[TrainConfig, RunDir | None]:
    """The configuration, and the run directory when resuming; else recipe + overrides and no run yet."""
    given = {name: value for name, value in overrides.items() if value is not None}
    if resume is not None:
        others = [name for name, value in (("config", config), ("output", output)) if value is not None]
        if others or given:  # silently ignored, they would train something other than asked
            more = ("; to train it further, start a new run from its weights (--weights RUN/model.keras)"
                    if "epochs" in given else "")  # "5 more epochs" is what a student asks of --resume
            raise FerkitError(f"a resumed run keeps its own configuration and directory: give nothing else but "
                              f"its data, if that has moved (got {', '.join([*others, *given])}){more}")
        run = RunDir(Path(resume))
        values = run.read_config()
        run.check_resumable()  # before the fields are checked: an ensemble's are not a recipe's
        first_epoch, weights = run.resume_point()
        run.repair_history(first_epoch)
        resumed = TrainConfig.from_dict(values)
        if weights:
            run.best_from_backup(resumed.checkpoint_on, weights)
        if data is not None:  # the same faces somewhere else: RunDir.check_same_faces makes sure
            resumed.data = str(Path(data).absolute())
        elif not resumed.data:  # "" would read the current folder as the data
            raise FerkitError(f"{run.path}'s config.json names no data: give it "
                              f"(ferkit train DATA --resume {run.path})")
        elif not Path(resumed.data).exists():
            raise FerkitError(f"the data {run.path} trained on, {resumed.data}, is not there any more: give it "
                              f"where it is now (ferkit train DATA --resume {run.path})")
        return resumed, run
    if config is None:
        config = TrainConfig.from_recipe(given.pop("recipe", DEFAULT_RECIPE), **given)
    elif "recipe" in given:
        raise FerkitError("give a config or a recipe, not both")
    else:  # a copy, with a few fields changed, checked again: a field set after the config was made
        # (numpy's numbers, classes as a string) had failed after the data loaded, or trained unchecked
        config = TrainConfig.from_dict({**without_stale_fallback(config.to_dict(), given), **given})
    config.warn_unread(given)
    if data is not None:
        config.data = str(data)
    if config.data and Path(config.data).exists():  # absolute: --resume reads it back from any folder
        config.data = str(Path(config.data).absolute())
    for name in ("weights", "teacher"):  # files, not names (imagenet, none, default): absolute for the same reason
        value = getattr(config, name)
        if value and value.lower() not in ("imagenet", "none", "default") and Path(value).exists():
            setattr(config, name, str(Path(value).absolute()))
    if not config.data:
        raise FerkitError("no training data given")
    return config, None


def _prepare_data(config: TrainConfig) -> tuple[Splits, dict[str, int], int]:
    t0 = time.time()
    data = load_fer(config.data)
    log.info("loaded %d faces from %s in %.1f s", len(data), data.source, time.time() - t0)
    if data.skipped:
        log.warning("skipped %s", describe_skipped(data.skipped))
    others = [f"{name} ({n})" for name, n in data.class_counts().items() if name not in config.classes]
    data, left_out = select_classes(data, config.classes)
    if left_out:
        log.info("left out %d faces of classes not in this run: %s", left_out, ", ".join(others))
    splits = train_share(make_splits(data, config.split, config.fractions, config.seed, config.drop_repeats),
                         config.train_fraction, config.seed)
    log.info("%s: %s", splits.description, splits.sizes())
    counts = {name: [int((part.labels == index).sum()) for part in (splits.train, splits.val, splits.test)]
              for index, name in enumerate(config.classes)}  # how the folders' names were read, to check
    log.info("faces per class, train/val/test: %s", ", ".join(f"{name} {'/'.join(map(str, n))}"
                                                             for name, n in counts.items()))
    untrained = [name for name, (trained, _, _) in counts.items() if not trained]
    if untrained:  # e.g. a train/ folder without it, its faces all under test/
        raise FerkitError(f"no training faces of {', '.join(untrained)} ({splits.description}): the model could "
                          "never predict it; add some, or leave it out with --classes")
    few = [f"{name} ({n[0]})" for name, n in counts.items() if n[0] < FEW_TRAINING_FACES]
    if few:
        log.warning("few training faces of %s: the model will hardly learn to tell %s apart", ", ".join(few),
                    "it" if len(few) == 1 else "them")
    return splits, data.skipped, left_out


def _compile(model: keras.Model, config: TrainConfig, num_train: int):
    loss, targets = techniques.loss_and_targets(config, len(config.classes))
    steps = techniques.steps_per_epoch(num_train, config.batch_size)
    optimizer, schedule = techniques.optimizer(config, steps)
    model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
    return targets, steps, schedule


def _fit_end_to_end(model, splits: Splits, config, run, fit_options):
    x = {name: to_model_input(getattr(splits, name).images, config.image_size)
         for name in ("train", "val", "test")}
    trainer = techniques.with_augmentation(model, techniques.augmentation(config))
    reserve = _finishing_seconds(config, lambda: (inference_model(config, model.get_weights()), x["test"],
                                                  len(x["test"]) + len(x["val"])), bn_faces=x["train"])
    interrupted, diverged = _fit(trainer, x["train"], x["val"], splits, config, run, reserve=reserve, **fit_options)
    model = inference_model(config, model.get_weights(), bn_faces=x["train"])
    return model, {name: model.predict(x[name], batch_size=256, verbose=0) for name in ("test", "val")}, \
        interrupted, diverged


def _fit_on_features(model, splits: Splits, config, run, fit_options):
    """Frozen backbone: run it once over every face, then train only the head on its features."""
    backbone, head = frozen_backbone(model), model.get_layer("head")
    t0 = time.time()
    # A mirror-averaged model scores its test faces whole (below): their features would go unused.
    parts = ("train", "val") if config.mirror_average else ("train", "val", "test")
    log.info("computing the frozen %s's features of %d faces once, for its head to train on", config.model,
             sum(len(getattr(splits, name).labels) for name in parts))  # minutes on a CPU: not in silence
    try:
        feats = {name: backbone.predict(to_model_input(getattr(splits, name).images, config.image_size),
                                        batch_size=256, verbose=fit_options["verbose"])
                 for name in parts}
    except KeyboardInterrupt:
        log.warning(NOTHING_KEPT)
        raise
    log.info("computed frozen %s features %s once in %.1f s", config.model,
             feats["train"].shape[1:], time.time() - t0)
    scored = len(splits.test) + len(splits.val)  # the saved model scores the test and validation faces
    reserve = _finishing_seconds(config, lambda: (
        (inference_model(config, model.get_weights()), to_model_input(splits.test.images[:256], config.image_size),
         scored) if config.mirror_average else (head, feats["test"], scored)))
    interrupted, diverged = _fit(head, feats["train"], feats["val"], splits, config, run, reserve=reserve,
                                 **fit_options)
    if config.precise_bn:  # the backbone's are frozen: only the head's, on the features it trained on
        recompute_batchnorm(head, feats["train"], config.seed)
    model = inference_model(config, model.get_weights())
    if config.mirror_average:  # no features of the mirror images: the whole model scores the faces
        scores = {name: model.predict(to_model_input(getattr(splits, name).images, config.image_size),
                                      batch_size=256, verbose=0) for name in ("test", "val")}
    else:
        scores = {name: model.get_layer("head").predict(feats[name], batch_size=256, verbose=0)
                  for name in ("test", "val")}
    return model, scores, interrupted, diverged


def _finishing_seconds(config: TrainConfig, scorer: Callable[[], tuple[keras.Model, np.ndarray, int]],
                       bn_faces: np.ndarray | None = None) -> float:
    """What a time limit keeps for after the last epoch, timed on the model that then scores the test
    and validation faces, on some of its inputs and with their number, which `scorer` makes only under
    a limit (0 without one), and on a throwaway network recomputing its BatchNorm statistics on
    `bn_faces` (precise BN)."""
    if not config.time_limit:
        return 0.0
    model, faces, count = scorer()
    seconds = budget.seconds_to_finish(model, faces, count=count)
    if config.precise_bn and bn_faces is not None:
        seconds += budget.seconds_to_recompute(build_model(config, "none", mixed_precision=False),
                                               batchnorm.batches_of(bn_faces, config.seed))
    return seconds


def _fit(trainer: keras.Model, x_train, x_val, splits: Splits, config: TrainConfig, run: RunDir,
         resume: bool, verbose: int, callbacks: list, started: float, teacher: np.ndarray | None,
         reserve: float, ctrl_c: StopOnCtrlC) -> tuple[bool, int]:
    """model.fit with the checkpoint/backup callbacks; restores the best weights. Whether Ctrl-C
    stopped it, and the epoch whose loss became NaN (0: none).
    A time limit keeps `reserve` seconds for the test faces' pass, precise BN and saving."""
    targets, steps, schedule = _compile(trainer, config, len(x_train))
    if config.time_limit:
        callbacks = [*callbacks, budget.TimeBudget(config.time_limit, config.epochs, steps, schedule, started,
                                                   reserve=reserve)]
    diverged = StopOnNaN()
    batches = ShuffledBatches(x_train, distill.soft_targets(config, targets(splits.train.labels), teacher),
                              techniques.sample_weights(config, splits.train.labels),
                              batch_size=config.batch_size, seed=config.seed)
    try:
        trainer.fit(
            batches,
            validation_data=(x_val, targets(splits.val.labels)), validation_batch_size=config.batch_size,
            shuffle=False, epochs=config.epochs, verbose=verbose,  # the batches shuffle themselves
            callbacks=[diverged, ctrl_c.saves_begin(), *run_callbacks(config, run, resume), *callbacks, ctrl_c],
        )
        interrupted = ctrl_c.requested
    except KeyboardInterrupt:
        interrupted = True
    finally:
        ctrl_c.finishing()  # what follows makes the run's model: a Ctrl-C there had lost it
        batches.release()
    nothing = not run.best_weights.is_file() and not diverged.epoch
    if interrupted and nothing:  # a Ctrl-C still, exit code 130: not an error, and --resume would find nothing
        log.warning(NOTHING_KEPT)
        raise KeyboardInterrupt
    if interrupted:
        log.warning("interrupted: keeping the best weights so far (resume with `ferkit train --resume %s`, or "
                    "train(resume=...) in Python)", run.path)
    if nothing:
        raise FerkitError("training stopped before its first epoch finished: nothing to keep")
    if run.best_weights.is_file():
        trainer.load_weights(run.best_weights)
    if diverged.epoch:
        _keep_after_nan(trainer, run, config, diverged.epoch)
    return interrupted, diverged.epoch


def _keep_after_nan(trainer: keras.Model, run: RunDir, config: TrainConfig, epoch: int) -> None:
    """The best weights of the epochs before it, or a clear error where no epoch before it was
    kept (StopOnNaN scores the diverged epoch NaN, so the checkpoint never keeps it)."""
    finite = run.best_weights.is_file() and all(np.isfinite(keras.ops.convert_to_numpy(w)).all()
                                                for w in trainer.weights)
    if not finite:
        raise FerkitError(f"the training loss became NaN in epoch {epoch}: training diverged, and no earlier "
                          f"epoch is worth keeping; try a lower --learning-rate (this run's: "
                          f"{config.learning_rate:g})")
    log.warning("the training loss became NaN in epoch %d: stopped there, keeping the best earlier epoch's "
                "weights (a lower --learning-rate would train further)", epoch)


def _report_each_face(run: RunDir, splits: Splits, probs: np.ndarray, repeats: np.ndarray,
                      config: TrainConfig) -> None:
    """predictions.csv and mistakes.png, after the model is saved: a report that cannot be written
    (a full disk, the CSV open in a program that locks it) must not cost the run."""
    try:
        write_predictions(run, splits.test.images, splits.test.labels, probs, config.classes, splits.test.names,
                          repeats, title=f"{run.path.absolute().name}, test split")
    except OSError as exc:
        log.warning("the run is saved, but its predictions.csv or mistakes.png could not be written: %s", exc)


def _save(model: keras.Model, run: RunDir, metrics: dict[str, Any]) -> None:
    for export in run.exports:  # an export of earlier weights would shadow these
        export.unlink(missing_ok=True)
    # Each file whole or not at all: a kill or a full disk mid-save must not leave a cut-short
    # model.keras that makes the folder read as a finished run (the backup goes only after this).
    for path, save in ((run.keras_model, model.save), (run.weights, model.save_weights),
                       (run.model_json, lambda part: part.write_text(model.to_json(), encoding="utf-8"))):
        with replacing(path) as part:
            save(part)
    write_metrics(run, metrics, title="test split")
    write_history_plots(run, saved=(metrics["best_epoch"], metrics["val_accuracy"]))
