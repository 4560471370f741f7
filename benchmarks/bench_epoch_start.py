"""Idle time at epoch starts: `model.fit` on numpy arrays against ferkit's `ShuffledBatches`.

    python benchmarks/bench_epoch_start.py [--faces 4096] [--epochs 5] [--size 40] [--feed arrays|batches]

Given arrays, Keras on TensorFlow makes a tf.data iterator per epoch; dropping the previous one
waits for tf.data's autotuning thread, which sleeps up to a minute at a time. Most of the wait
shows as seconds between an epoch's start and its first training step; the wall time per epoch
holds all of it. Random faces, the default's fallback network (fernet blocks 0,1,1,1) with its
augmentation, batch 64; each feed in a process of its own. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ferkit  # noqa: E402, F401  (before Keras: it turns on TensorFlow's oneDNN kernels, as `ferkit train` has them)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.models import create_model  # noqa: E402
from ferkit.training.batches import ShuffledBatches  # noqa: E402
from ferkit.training.config import TrainConfig  # noqa: E402
from ferkit.training.techniques import augmentation, with_augmentation  # noqa: E402

BATCH = 64


class _EpochStart(keras.callbacks.Callback):
    """Per epoch: wall seconds, and the seconds from its start to its first training step."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[float, float]] = []

    def on_epoch_begin(self, epoch, logs=None):
        self.begin, self.first = time.perf_counter(), None

    def on_train_batch_begin(self, batch, logs=None):
        if self.first is None:
            self.first = time.perf_counter() - self.begin

    def on_epoch_end(self, epoch, logs=None):
        self.rows.append((time.perf_counter() - self.begin, self.first))


def run(feed: str, faces: int, epochs: int, size: int) -> list[tuple[float, float]]:
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (faces, size, size, 1)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, 7, faces), 7)
    weights = rng.random(faces).astype("float32")
    model = create_model("fernet", image_size=size, num_classes=7, weights="none", blocks=(0, 1, 1, 1))
    trainer = with_augmentation(model, augmentation(TrainConfig(augment=True)))
    trainer.compile(optimizer="adamw", loss="categorical_crossentropy")
    timing = _EpochStart()
    common = {"epochs": epochs, "verbose": 0, "callbacks": [timing], "validation_data": (x[:1024], y[:1024]),
              "validation_batch_size": BATCH}
    if feed == "arrays":
        trainer.fit(x, y, sample_weight=weights, batch_size=BATCH, **common)
    else:
        trainer.fit(ShuffledBatches(x, y, weights, batch_size=BATCH, seed=0), shuffle=False, **common)
    return timing.rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=5, help="at least 2 (the first one traces)")
    parser.add_argument("--size", type=int, default=40)
    parser.add_argument("--feed", choices=("arrays", "batches"), help="time this feed alone (default: both)")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2")
    if args.feed is None:  # each in a fresh process: no tf.data threads left over from the other
        print(f"{args.faces} random {args.size}-px faces, batch {BATCH}, {keras.backend.backend()}, "
              f"{os.cpu_count()} CPU cores; epoch 1 includes tracing", flush=True)
        for feed in ("arrays", "batches"):
            subprocess.run([sys.executable, __file__, *sys.argv[1:], "--feed", feed], check=True)
        return
    rows = run(args.feed, args.faces, args.epochs, args.size)
    label = {"arrays": "numpy arrays", "batches": "ShuffledBatches"}[args.feed]
    print(f"  {label:<16} " + "  ".join(f"{wall:5.1f} s ({first:4.1f} idle)" for wall, first in rows))
    later = rows[1:]
    print(f"  {'':<16} epochs 2-{len(rows)}: {sum(w for w, _ in later):6.1f} s, "
          f"{sum(f for _, f in later):5.1f} s of it before the first step")


if __name__ == "__main__":
    main()
