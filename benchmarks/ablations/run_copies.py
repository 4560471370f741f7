"""What the ablation scripts share: changed copies of trained runs, which `ferkit evaluate` and
`predict_split` read back as runs, in a folder kept only when asked."""

from __future__ import annotations

import argparse
import contextlib
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

from ferkit.data.sources import load_fer
from ferkit.data.splits import Splits, make_splits, select_classes
from ferkit.models.mirror import MirrorAverage
from ferkit.runs import RunDir, write_json
from ferkit.training.config import TrainConfig


def arguments(doc: str, kept: str) -> argparse.ArgumentParser:
    """DATA RUN [RUN ...] [--keep DIR], `kept` saying what --keep keeps."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help=f"write {kept} here and keep them (for `ferkit evaluate`)")
    return parser


@contextlib.contextmanager
def copies_folder(keep: Path | None) -> Iterator[Path]:
    """`keep`, made if need be, or a temporary folder that goes afterwards."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder


def network(model: keras.Model) -> keras.Model:
    """The network a mirror-averaged model wraps (its weights and statistics), else the model."""
    if any(isinstance(layer, MirrorAverage) for layer in model.layers):
        return model.get_layer("mirror_average").inner
    return model


def save_copy(run: Path, path: Path, model: keras.Model, **changes: Any) -> Path:
    """A run directory at `path` holding `model`, with `run`'s configuration and `changes` to it."""
    copy = RunDir(path)
    copy.path.mkdir()
    write_json(copy.config, {**RunDir(run).read_config(), **changes})
    model.save(copy.keras_model)
    return copy.path


def run_splits(run: Path, data: str) -> tuple[TrainConfig, Splits]:
    """`run`'s configuration and its faces, split again as the run split them."""
    config = TrainConfig.from_dict(RunDir(run).read_config())
    dataset, _ = select_classes(load_fer(data), config.classes)
    return config, make_splits(dataset, config.split, config.fractions, config.seed, config.drop_repeats)
