"""Whether averaging the weights of a run's last epochs, with BatchNorm statistics recomputed after,
beats its last epoch's weights.

    python benchmarks/ablations/tail_average.py DATA RUN EPOCHS [--last 1,2,3,4,6,8] [--decay 0.5,0.8]
                                                [--split val] [--recipe R] [--seed S]

EPOCHS holds each epoch's network weights (`epochNNN.npz`). Where RUN does not exist yet, the script
trains it first (the default recipe, or --recipe) and keeps them there (EPOCHS must then be empty:
an earlier run's later epochs would join the average); the extra callback changes nothing in the
training, so its history is that of the same command without the script where the time limit does
not re-plan the run (the default's 40 epochs on a CPU: timings, of which the saving is one, do). Then it
scores each average on RUN's split (validation by default) as precise BN saves it: the uniform mean of
the last K epochs' weights (stochastic weight averaging over the cosine schedule's tail) and, per
--decay D, an exponential average (each epoch's end weighing 1 - D), their statistics recomputed on
the training faces (`ferkit.training.networks.inference_model`). An average's moving statistics
describe none of the networks averaged, so they are always recomputed; "last 1" is the last
epoch's weights, the run's saved model where it kept its last epoch and recomputed them too.
Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from run_copies import run_splits  # noqa: E402

from ferkit.data.preprocess import to_model_input  # noqa: E402
from ferkit.evaluation.metrics import classification_metrics  # noqa: E402
from ferkit.runs import RunDir  # noqa: E402
from ferkit.training import train  # noqa: E402
from ferkit.training.config import TrainConfig  # noqa: E402
from ferkit.training.features import frozen_backbone  # noqa: E402
from ferkit.training.networks import build_model, inference_model  # noqa: E402

Weights = list[np.ndarray]


class KeepEpochs(keras.callbacks.Callback):
    """Each epoch's network weights. The trainer's augmentation layers hold none, so its weights are
    its network's, in the same order."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = folder

    def on_epoch_end(self, epoch, logs=None):
        self.folder.mkdir(parents=True, exist_ok=True)
        np.savez(self.folder / f"epoch{epoch:03d}.npz", *self.model.get_weights())


def train_keeping_epochs(data: str | Path, run: Path, folder: Path, recipe: str | None = None, **overrides) -> Path:
    """`train(data, recipe, **overrides)` into `run`, each epoch's network weights kept in `folder`. A
    frozen backbone's recipe is refused first: its training fits the head alone, so the epochs kept
    would be the head's, which no average puts back into the whole network."""
    fields = {name: value for name, value in overrides.items() if value is not None and name != "verbose"}
    config = TrainConfig.from_recipe(recipe or "default", **fields)
    if frozen_backbone(build_model(config, "none", mixed_precision=False)) is not None:
        raise SystemExit(f"{config.recipe} trains the head of a frozen backbone: its epochs' weights are the "
                         "head's alone; give a recipe that trains its whole network")
    return train(data, output=run, callbacks=[KeepEpochs(folder)], recipe=recipe, **overrides).run_dir


def read_epochs(folder: Path) -> list[Weights]:
    files = sorted(folder.glob("epoch*.npz"))
    if not files:
        raise SystemExit(f"{folder} holds no epochNNN.npz: give the folder the training kept them in")
    return [[saved[f"arr_{i}"] for i in range(len(saved.files))] for saved in map(np.load, files)]


def averages(weights: list[Weights], last: list[int], decays: list[float]) -> dict[str, Weights]:
    """The variants by name: the mean of the last K epochs' weights, and each exponential average."""
    variants = {f"last {k}": [np.mean(arrays, axis=0) for arrays in zip(*weights[-k:])]
                for k in last if k <= len(weights)}
    for decay in decays:
        average = [w.astype("float64") for w in weights[0]]
        for epoch in weights[1:]:
            average = [decay * a + (1 - decay) * w for a, w in zip(average, epoch)]
        variants[f"decay {decay:g}"] = [a.astype("float32") for a in average]
    return variants


def saved_as(config: TrainConfig, weights: Weights, train_faces: np.ndarray) -> keras.Model:
    """`weights` as a run of `config` saves them, their BatchNorm statistics recomputed on the run's
    `train_faces` (model input) as precise BN does."""
    return inference_model(dataclasses.replace(config, precise_bn=True), weights, bn_faces=train_faces)


def score(data: str, run: Path, variants: dict[str, Weights], split: str) -> None:
    config, splits = run_splits(run, data)
    train_faces = to_model_input(splits.train.images, config.image_size)
    faces, labels = to_model_input(getattr(splits, split).images, config.image_size), getattr(splits, split).labels
    print(f"| {run.name}: weights | {split} accuracy | macro-F1 |\n|---|---|---|")
    for name, weights in variants.items():
        probs = saved_as(config, weights, train_faces).predict(faces, batch_size=256, verbose=0)
        metrics = classification_metrics(labels, probs, config.classes)
        print(f"| {name} | {metrics['accuracy']:.4f} | {metrics['macro_f1']:.3f} |", flush=True)


def _numbers(kind):
    return lambda text: [kind(part) for part in text.split(",") if part]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("run", type=Path)
    parser.add_argument("epochs", type=Path, help="the folder of each epoch's weights")
    parser.add_argument("--last", type=_numbers(int), default=[1, 2, 3, 4, 6, 8], metavar="K,...")
    parser.add_argument("--decay", type=_numbers(float), default=[0.5, 0.8], metavar="D,...")
    parser.add_argument("--split", choices=("val", "test"), default="val")
    parser.add_argument("--recipe", help="the recipe RUN trains with, where it does not exist yet")
    parser.add_argument("--seed", type=int)
    args = parser.parse_args()
    if [k for k in args.last if k < 1] or [d for d in args.decay if not 0 < d < 1]:
        parser.error("--last takes epochs >= 1 (`last 0` was the mean of every epoch), --decay numbers in (0, 1)")
    if not RunDir(args.run).holds_run():
        if args.epochs.is_dir() and any(args.epochs.iterdir()):
            parser.error(f"{args.epochs} is not empty: its files would mix with this run's epochs")
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        train_keeping_epochs(args.data, args.run, args.epochs, recipe=args.recipe, seed=args.seed)
    score(args.data, args.run, averages(read_epochs(args.epochs), args.last, args.decay), args.split)


if __name__ == "__main__":
    main()
