"""What a trained model says about itself, read from its run directory: its classes and input size,
its test metrics, how long it trained, what an ensemble keeps of its members, and the metadata keys
under which an exported .onnx file carries the same (read by ferkit.inference.backends). Inference
reads it without Keras or TensorFlow."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferkit.data.labels import EMOTIONS, SEED_CLASSES
from ferkit.errors import FerkitError
from ferkit.runs.directory import RunDir

# The metadata keys an exported .onnx file describes itself with (written by ferkit.models.export,
# read by ferkit.inference.backends), so a bare .onnx file needs no run directory beside it.
ONNX_META = {"classes": "ferkit.classes", "image_size": "ferkit.image_size", "config": "ferkit.config",
             "recorded": "ferkit.recorded",  # the run's test metrics and epochs trained
             "input": "ferkit.input", "output": "ferkit.output"}  # both in words, for use without ferkit
# What an ensemble keeps of its first member's config, so that evaluation rebuilds that member's splits.
SPLIT_PROTOCOL = ("data", "classes", "split", "fractions", "image_size", "seed", "drop_repeats", "train_fraction")


def member_summary(config: dict, keys: tuple[str, ...]) -> dict:
    """What an ensemble's config.json keeps of one member's: `keys`, and the member's own members
    when it is an ensemble itself, so that the networks inside can still be counted."""
    return {**{k: config.get(k) for k in keys}, **({"members": config["members"]} if config.get("members") else {})}


def count_networks(config: dict) -> int:
    """How many trained networks a model averages, counting inside members that are ensembles."""
    return sum(count_networks(m) for m in config["members"]) if config.get("members") else 1


def test_faces_drawn(config: dict) -> tuple:
    """What decides a run's test faces: the official split's test part is FER2013's, whatever the seed;
    a random split's are drawn by its shares, seed and dropped repeats (an ensemble's members, runs
    compared without a record of their faces)."""
    if config.get("split") == "official":
        return ("official",)
    return (config.get("split"), tuple(config.get("fractions") or ()), config.get("seed"),
            bool(config.get("drop_repeats")))


def run_of(model: str | Path) -> RunDir | None:
    """The run directory a model belongs to: itself, or the folder of its file when the file is one
    of the run's own models. Another .onnx copied into a run's folder is not that run's: its
    metrics and history would describe a different network."""
    path = Path(model)
    if path.is_dir():
        return RunDir(path)
    run = RunDir(path.parent)
    return run if path.name in {own.name for own in run.model_files} else None


def metrics_beside(model: str | Path) -> dict:
    """The test metrics of the run a model belongs to (its metrics.json), or {}."""
    run = run_of(model)
    try:
        metrics = json.loads(run.metrics.read_text(encoding="utf-8")) if run and run.metrics.is_file() else {}
    except (ValueError, OSError):  # a damaged file, or someone else's metrics.json beside a model
        return {}
    return checked_metrics(metrics)


def checked_metrics(metrics: Any) -> dict:
    """Test metrics that can be printed: {} for what has no accuracy as a number (hand-edited, another
    tool's file), without the per-class figures where those are not numbers."""
    numbers = isinstance(metrics, dict) and all(isinstance(metrics.get(key, 0.0), (int, float))
                                                for key in ("accuracy", "macro_f1"))
    if not (numbers and "accuracy" in metrics):
        return {}
    if not _per_class_ok(metrics.get("per_class", {})):  # hand-edited, or another tool's
        metrics = {key: value for key, value in metrics.items() if key != "per_class"}
    unseen = metrics.get("unseen")  # null too: readers take it for a dict where the key is there
    if "unseen" in metrics and not (isinstance(unseen, dict) and all(
            isinstance(unseen.get(key), (int, float)) for key in ("faces", "repeats", "accuracy", "macro_f1"))):
        metrics = {key: value for key, value in metrics.items() if key != "unseen"}
    return metrics


def _per_class_ok(per_class: object) -> bool:
    return isinstance(per_class, dict) and all(
        isinstance(m, dict) and all(isinstance(m.get(key), (int, float)) for key in ("f1", "recall", "support"))
        for m in per_class.values())


def epochs_trained(model: str | Path, metrics: dict | None = None) -> int | None:
    """How many epochs the model's run trained: fewer than its `epochs` where a time limit or Ctrl-C
    cut it short. As its metrics.json (`metrics`, where already read) says, where it does: the
    history.csv of a run being resumed grows while its model is still the earlier one."""
    recorded = (metrics_beside(model) if metrics is None else metrics).get("epochs_trained")
    if isinstance(recorded, int) and not isinstance(recorded, bool):
        return recorded
    run = run_of(model)
    return None if run is None else run.history_rows()


@dataclass(frozen=True)
class ModelInfo:
    """What a caller needs to feed a trained model and read its output."""

    classes: tuple[str, ...]
    image_size: int
    config: dict[str, Any]

    @property
    def mirror_averaged(self) -> bool:
        """The model averages each face with its mirror image itself (ferkit.models.mirror)."""
        return bool(self.config.get("mirror_average", False))


def model_info(model_path: str | Path, num_outputs: int | None = None,
               image_size: int | None = None) -> ModelInfo:
    """Classes and input size of a run directory, or of a model file with a config.json beside it.

    A bare model file without one is accepted only when its output size says which classes it
    has: 7 (all of FER2013) or 6 (the seed's set without disgust). `num_outputs` and `image_size`,
    the model's own where known, must agree with a config.json beside it.
    """
    path = Path(model_path)
    run = RunDir(path if path.is_dir() else path.parent)
    if run.config.is_file():
        config = run.read_config()
        try:
            info = ModelInfo(tuple(config["classes"]), int(config["image_size"]), config)
        except (KeyError, TypeError, ValueError):
            raise FerkitError(f"{run.config} is damaged: it lacks the model's classes or image_size") from None
        if (num_outputs or len(info.classes), image_size or info.image_size) != (len(info.classes), info.image_size):
            # a model file copied beside another run's config.json, which describes that run's model
            raise FerkitError(f"{path} takes {image_size}-px faces and scores {num_outputs} classes, but the "
                              f"config.json beside it says {info.image_size} px and {len(info.classes)}: that "
                              "config.json is another model's; give the file its own run")
        return info
    by_size = {len(EMOTIONS): EMOTIONS, len(SEED_CLASSES): SEED_CLASSES}
    if num_outputs in by_size and image_size:
        return ModelInfo(by_size[num_outputs], image_size, {})
    raise FerkitError(f"cannot tell the classes of {path}: give its run directory (with config.json)")
