"""`evaluate`: a trained model on FER2013 data, with the same metrics.json a training run writes."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ferkit.account import tells_its_account
from ferkit.choices import EVAL_SPLITS
from ferkit.data.preprocess import to_model_input
from ferkit.data.sources import describe_skipped, load_fer
from ferkit.data.splits import (HELD_OUT, Split, has_usage, held_out_alone, make_splits, repeats_training,
                                 select_classes, train_share)
from ferkit.errors import FerkitError
from ferkit.evaluation.metrics import classification_metrics, format_metrics, warn_if_one_label
from ferkit.evaluation.report import write_metrics, write_predictions
from ferkit.inference.backends import DEFAULT_MODEL, Backend, load_backend, predict_scores, recorded_metrics
from ferkit.runs import RunDir, run_of

log = logging.getLogger("ferkit")


@tells_its_account
def evaluate(model: str | Path, data: str | Path, split: str = "test",
             output: str | Path | None = None, tta: bool = False, verbose: int | None = None) -> dict[str, Any]:
    """Accuracy, macro-F1, per-class scores and confusion matrix of `model` on `data`.

    `model` is "default" (the bundled model), a run directory, or a .keras / .onnx file.
    `split="test"` re-creates the model's own test split on `data` (same protocol, fractions and
    seed as its training run), `"val"` its validation split: the one to choose between models on,
    so that the test split stays unseen. `"all"` uses every face of the model's classes. With
    `output`, the folder gets metrics.json, confusion_matrix.png, predictions.csv (a row per face)
    and mistakes.png (the most confident mistakes). `verbose`, as `train` takes it: 0 shows no
    progress bar, 1 or 2 one everywhere (a notebook), None one on a terminal only.
    """
    if not isinstance(tta, bool):  # tta="no" would be true
        raise FerkitError(f"tta must be True or False, got {tta!r}")
    if verbose not in (None, 0, 1, 2):  # True and False too, as 1 and 0
        raise FerkitError(f"verbose is 0, 1, 2 or None, got {verbose!r}")
    if output is not None:
        _check_output(RunDir(Path(output)), split)
    probs, faces = _predict(model, data, split, tta, progress=verbose != 0, everywhere=bool(verbose))
    metrics = classification_metrics(faces.labels, probs, faces.classes, repeats=faces.repeats)
    metrics.update(split=faces.description, model=str(model), data=str(data), tta=tta,
                   skipped={"unreadable_or_bad": dict(faces.skipped), "other_classes": faces.left_out})
    log.info("%s: %s", faces.description, format_metrics(metrics))
    warn_if_one_label(metrics)
    if output is not None:
        run = RunDir(Path(output))
        run.path.mkdir(parents=True, exist_ok=True)
        # the model named too: two evaluations' figures side by side had the same title
        title = f"{_model_name(model)} on {Path(data).absolute().name}, {split}"
        write_metrics(run, metrics, title=title)
        write_predictions(run, faces.batch, faces.labels, probs, faces.classes, faces.names, faces.repeats, title)
    return metrics


def _model_name(model: str | Path | None) -> str:
    """A model as a figure's title names it: its run's folder (not model.onnx), "default", "." as its folder."""
    if model is None or str(model) == DEFAULT_MODEL:
        return DEFAULT_MODEL
    run = run_of(model)
    return (run.path if run is not None else Path(model)).absolute().name


def _check_output(run: RunDir, split: str) -> None:
    """Before minutes of predicting: an evaluation never replaces a run's or an earlier evaluation's
    results (two models compared in one folder would leave only the second's)."""
    if run.holds_run():
        raise FerkitError(f"{run.path} holds a training run, whose metrics.json and confusion matrix are its "
                          f"own test results: give the evaluation another --output (e.g. {run.path / split})")
    models = [path.name for path in run.model_files if path.exists()]
    if models:  # its metrics.json would be read as that model's test results (ferkit info, export)
        raise FerkitError(f"{run.path} holds {', '.join(models)}, whose test results ferkit reads from a metrics.json "
                          f"beside it: give the evaluation another --output (e.g. {run.path / split})")
    run.check_writable("an evaluation")  # a file there had raised FileExistsError after the whole prediction
    earlier = [path.name for path in (run.metrics, run.confusion_plot, run.predictions, run.mistakes_plot)
               if path.exists()]
    if earlier:
        raise FerkitError(f"{run.path} already holds an evaluation ({', '.join(earlier)}): give another --output, "
                          "or delete them to evaluate again")


def predict_split(model: str | Path, data: str | Path, split: str = "val",
                  tta: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """`model`'s probabilities on a split of `data` and the true labels: what ensembles are chosen on."""
    probs, faces = _predict(model, data, split, tta)
    return probs, faces.labels


class SplitFaces(NamedTuple):
    """A split of FER2013 data as `model` sees it: its input batch and what the report says of it."""
    batch: np.ndarray  # model input, (N, size, size, 1)
    labels: np.ndarray  # indices into the model's classes
    classes: tuple[str, ...]
    description: str  # which split of which protocol
    skipped: Counter  # unreadable or bad faces in the data
    left_out: int  # faces of classes the model does not know
    repeats: np.ndarray | None = None  # which faces repeat a face of the run's training part (None: no such part)
    names: np.ndarray | None = None  # where each face came from: a file's path in the data, a CSV's line


def load_split(backend: Backend, model: str | Path, data: str | Path, split: str = "val") -> SplitFaces:
    """The faces of `split` rebuilt on `data` as `model`'s training run made it, ready for `backend`.

    Separate from predicting so that benchmarks can score the same faces their own way (e.g. one
    test-time view at a time).
    """
    _check_split(split)
    info = backend.info
    dataset = load_fer(data)
    if dataset.skipped:
        log.warning("skipped %s", describe_skipped(dataset.skipped))
    others = {name: n for name, n in dataset.class_counts().items() if name not in info.classes}
    dataset, left_out = select_classes(dataset, info.classes, require_all=False)
    if not len(dataset):
        raise FerkitError(f"{data} has no faces of the model's classes ({', '.join(info.classes)})")
    if left_out:  # the classes the data has and the model lacks, not all it lacks
        log.warning("left out %d faces of class(es) the model does not know: %s", left_out,
                    ", ".join(f"{name} ({n})" for name, n in others.items()))
    part, description, repeats = _split_faces(dataset, split, info.config, model, data, backend.name)
    _warn_if_another_protocol(recorded_metrics(backend).get("split"), description, split)
    batch = to_model_input(part.images, info.image_size)
    return SplitFaces(batch, part.labels, info.classes, description, dataset.skipped, left_out, repeats, part.names)


def _predict(model, data, split: str, tta: bool, progress: bool = True,
             everywhere: bool = False) -> tuple[np.ndarray, SplitFaces]:
    _check_split(split)  # before loading the model
    backend = load_backend(model)
    faces = load_split(backend, model, data, split)
    return predict_scores(backend, faces.batch, tta, progress=progress, everywhere=everywhere), faces


def _warn_if_another_protocol(trained: str | None, rebuilt: str, split: str) -> None:
    """A run trained where the data had PrivateTest (val = PublicTest, test = PrivateTest), rebuilt on
    data without it (val = part of Training, test = PublicTest): its "val" faces are then faces it
    trained on, and its "test" faces the ones that chose its kept epoch. The other way round (the
    bundled model on the full download, say) its faces here are unseen, so nothing is said."""
    if trained and trained.startswith("official") and "test = PrivateTest" in trained \
            and "test = PrivateTest" not in rebuilt:
        log.warning("the model's run had FER2013's PrivateTest (%s), this data has not: its %s faces here "
                    "include faces it trained on or chose its epoch by", trained, split)


def _check_split(split: str) -> None:
    if split not in EVAL_SPLITS:
        raise FerkitError(f"unknown split {split!r}; choose from {', '.join(EVAL_SPLITS)}")


def _split_faces(dataset, split: str, cfg: dict[str, Any], model, data, path: str):
    """The faces of the split asked for and its description, rebuilt as the training run made it
    (`path`: the model's file or run folder, where its recorded split is), and which of them repeat
    a face of the training part rebuilt with it."""
    if split == "all":
        return Split(dataset.images, dataset.labels, dataset.names), f"all {len(dataset)} faces", None
    if any(cfg.get(key) is None for key in ("split", "fractions", "seed")):  # a bare .keras file's export says none
        raise FerkitError(f"{model} has no training configuration to rebuild its {split} split: use --split all")
    if cfg["split"] == "official" and not has_usage(dataset):
        return _held_out_alone(dataset, split, data)
    if split == "val" and "members" in cfg:
        log.warning("an ensemble's members each held out their own validation faces; the %s part "
                    "rebuilt here may include faces they were trained on", split)
    splits = make_splits(dataset, cfg["split"], tuple(cfg["fractions"]), cfg["seed"], bool(cfg.get("drop_repeats")))
    if not _same_faces(path, splits, cfg, split, data):
        log.warning("this data does not split into the faces the model's run had (%s): its %s faces here may "
                    "include faces it trained on; evaluate on the data it trained on, or use --split all",
                    cfg.get("data"), split)
    part = getattr(splits, split)
    description = splits.description if split == "test" else f"validation part of {splits.description}"
    if split == "val" and "members" in cfg and "val" in splits.carved:
        # each member trained on most of these faces: an "unseen" score (87% for the bundled model) was none
        return part, description, None
    # the faces the run trained on, a --train-fraction's share of the part; not in the split's description
    trained = train_share(splits, cfg.get("train_fraction", 1.0), cfg["seed"])
    return part, description, repeats_training(part, _seen(trained, cfg, split))


def _held_out_alone(dataset, split: str, data):
    """FER2013's own val or test part in data without its Training part (a copy of test/ alone):
    scored, though which of its faces repeat a training face cannot be told without those."""
    alone = held_out_alone(dataset, split)
    if alone is None:
        held, trained = np.isin(dataset.usage, HELD_OUT).any(), (dataset.usage == "train").any()
        has = ("no Training part" if held else "no test part (PublicTest, PrivateTest or a validation folder)"
               if trained else "neither a Training nor a test part")
        raise FerkitError(f"{data} holds {has} of FER2013 (file names Training_/PublicTest_/PrivateTest_, folders "
                          f"train/ beside test/, or a CSV's Usage column), so the model's {split} split cannot be "
                          "rebuilt on it: use --split all to score every face")
    # Both parts named for a val part, as the official split says them: a run trained with both test
    # parts reads "test = PrivateTest" to know its "val" faces here are its own PublicTest
    part, named = alone
    description = f"official split: {named}, in data without Training faces (their repeats not known)"
    return part, description, None


def _seen(splits, cfg: dict[str, Any], split: str) -> Split:
    """The faces the model may have learnt: its run's training part, or for an ensemble's test part
    its validation part too where that was drawn at random, each member having drawn its own (not
    FER2013's PublicTest or a validation folder, which every member held out)."""
    if split != "test" or "members" not in cfg or "val" not in splits.carved:
        return splits.train
    return Split(np.concatenate([splits.train.images, splits.val.images]),
                 np.concatenate([splits.train.labels, splits.val.labels]))


def _same_faces(path: str, splits, cfg: dict[str, Any], split: str, data) -> bool:
    """Whether the part rebuilt here holds no training faces: one drawn at random (`Splits.carved`)
    must be the run's own draw (its recorded fingerprint: that part's digest, or the whole split's
    in a run from before those), for one face missing from a copy of the data reshuffles it,
    whatever the folder's name. A run without a fingerprint is judged by that name."""
    if split not in splits.carved:  # FER2013's own test parts, a validation folder: never trained on
        return True
    run = run_of(path)
    if run is not None and run.split_fingerprint.is_file():
        now = splits.fingerprint()
        try:
            then = run.recorded_split()
        except FerkitError:  # damaged: nothing says these are the faces it held out
            return False
        if "parts" in then:
            return then["parts"].get(split) == now["parts"][split]
        return (then["sizes"], then["sha256"]) == (now["sizes"], now["sha256"])
    trained_on = Path(cfg.get("data") or str(data)).absolute().name  # "." and "/abs/folder" alike
    return trained_on == Path(str(data)).absolute().name  # the official split's val part too, drawn at random
