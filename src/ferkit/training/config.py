"""Training configuration: dataclass defaults, overridden by a named recipe, overridden by flags.

Recipes are TOML files shipped in ferkit/recipes/ (or any .toml path a user gives), in the
spirit of ultralytics' default.yaml: one set of fields, every CLI flag overrides one of them.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import numbers
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ferkit.choices import CHECKPOINT_ON, CLASS_WEIGHTS, MIXED_PRECISION, SCHEDULES, SPLITS
from ferkit.data.labels import EMOTIONS, parse_classes
from ferkit.data.splits import check_fractions
from ferkit.errors import FerkitError
from ferkit.recipes import load_recipe, unknown_fields, with_changes, without_stale_fallback

DEFAULT_RECIPE = "default"
log = logging.getLogger("ferkit")

# A recipe's fallback network trains when its own would fit fewer than this share of its epochs,
# or fewer than the number it names (`fallback_below`) where that is smaller. On a 2-core AMX
# Xeon 12 epochs of the default's own network did as well on validation as all 22 of its fallback,
# and 20 did 2.6 points better (benchmarks/ablations/README.md, "The fallback's threshold"); 0.75
# had sent 16 to the fallback. Its 14 epochs beat the 26 the fallback trains in their time by 1.6
# points (session 51, "The fallback's threshold now that the fallback fills the hour too").
FALLBACK_BELOW = 0.6
MOST_IMAGE_SIZE = 1024  # FER2013's Training part as float32 input: 112 GiB. Larger is never meant


@dataclass
class TrainConfig:
    # The recipe these values came from: none for a configuration built in Python, whose fields are
    # these defaults and not the default recipe's (it had said "default", in config.json and in
    # `ferkit info`, of a run that trained the seed's CNN). Its run's folder is then runs/train-*.
    recipe: str = ""
    description: str = ""
    data: str = ""  # where the faces came from; kept so that --resume needs nothing else
    model: str = "custom"
    model_options: dict[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = EMOTIONS
    split: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    # Faces drawn at random to validate (and test, in the random split) that repeat a training face
    # pixel for pixel left out of them (ferkit.data.splits.make_splits). Off here so that a run from
    # before the field rebuilds the split it trained on; the shipped recipes switch it on.
    drop_repeats: bool = False
    # The share of the training part trained on, each class in proportion (ferkit.data.splits.train_share):
    # a quick trial on a tenth of the faces, tested on the same faces as a full run
    train_fraction: float = 1.0
    image_size: int = 48
    weights: str = "none"
    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0
    early_stopping: int = 0  # patience in epochs; 0 turns it off
    # Minutes for the whole run, data loading included (0: none). `epochs` stays the most it trains;
    # when fewer fit, the cosine schedule is shortened to end in the last epoch that does.
    time_limit: float = 0.0
    # With a time limit: options that replace some of `model_options` when a few training steps,
    # timed before the first epoch, say that fewer than `fallback_below` epochs would fit, or 60% of
    # `epochs` where that is fewer (0: 60% of `epochs`) (a lighter network for slow CPUs;
    # ferkit.training.networks), and the smaller faces it then trains on (0: image_size). Neither
    # set: the network is always the same.
    fallback_model_options: dict[str, Any] = field(default_factory=dict)
    fallback_image_size: int = 0
    fallback_below: int = 0
    # The epoch kept: lowest val_loss (the seed's) or highest val_accuracy. With label smoothing and a
    # long cosine schedule, val_loss bottoms out early while accuracy still climbs to the last epoch.
    checkpoint_on: str = "val_loss"
    precompute_features: bool = True  # frozen backbones: fit the head on cached features
    # Regularisation and schedule (see ferkit.training.techniques); the seed used none of them.
    augment: bool = False  # random flip, shift, rotation and zoom on the training faces
    erasing: float = 0.0  # random-erasing strength (0 turns it off)
    label_smoothing: float = 0.0
    class_weight: str = "none"  # "balanced": inverse frequency; "sqrt": its square root, gentler
    schedule: str = "constant"  # or "cosine" (with warmup_epochs of linear warm-up)
    warmup_epochs: int = 0
    weight_decay: float = 0.0  # > 0 switches Adam to AdamW
    # bfloat16 compute while training ("on", "off", or "auto": where the GPU or CPU computes it
    # natively and faster; ferkit.training.precision); the saved model is float32 either way.
    mixed_precision: str = "off"
    # Knowledge distillation (ferkit.training.distill): "default" (the bundled model), a run
    # directory or an .onnx file whose probabilities make up `teacher_weight` of each training
    # target; "" (or "none", as `--teacher none`) turns it off.
    teacher: str = ""
    teacher_weight: float = 0.5
    teacher_flip: bool = False  # the teacher's probabilities averaged over each face and its mirror image
    # The saved model scores each face and its mirror image and averages the two (twice the inference
    # work; ferkit.models.mirror). Training is unchanged.
    mirror_average: bool = False
    # The saved model's BatchNorm statistics recomputed on un-augmented training faces once training
    # ends, in place of training's moving averages (ferkit.training.batchnorm).
    precise_bn: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.classes, (int, float)):
            raise FerkitError("classes must be names")
        self.classes = parse_classes(self.classes)
        try:  # "0.8,0.1,0.1" as the CLI takes it, as classes are taken as "angry,happy"
            given = self.fractions.split(",") if isinstance(self.fractions, str) else self.fractions
            self.fractions = tuple(float(f) for f in given)
        except (TypeError, ValueError):
            raise FerkitError(f"fractions must be three numbers (train,val,test), got {self.fractions!r}") from None
        check_fractions(self.fractions, self.split)  # here, not after minutes of loading data
        if isinstance(self.mixed_precision, (bool, np.bool_)):  # a run or recipe from before "auto"
            self.mixed_precision = "on" if self.mixed_precision else "off"
        self._check_types()
        for name in ("epochs", "batch_size", "image_size"):
            if getattr(self, name) < 1:
                raise FerkitError(f"{name} must be a positive integer, got {getattr(self, name)}")
        for name, low, high in (("early_stopping", 0, None), ("fallback_image_size", 0, None),
                                ("fallback_below", 0, None),
                                ("warmup_epochs", 0, None), ("weight_decay", 0, None),
                                ("label_smoothing", 0, 0.99), ("erasing", 0, 1),
                                ("seed", 0, 2**32 - 1)):  # NumPy's range for a seed
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                raise FerkitError(f"{name} must be {f'{low} to {high}' if high else f'>= {low}'}, got {value}")
        for name in ("image_size", "fallback_image_size"):  # a fallback_image_size of 0 is the recipe's own
            if 0 < getattr(self, name) < 32 and self.model != "custom":  # custom's own check: its depth varies
                raise FerkitError(f"model {self.model} needs {name} >= 32, got {getattr(self, name)}")
            if getattr(self, name) > MOST_IMAGE_SIZE:  # now, not as an out-of-memory traceback once the data loads
                raise FerkitError(f"{name} must be at most {MOST_IMAGE_SIZE} px a side (FER2013's faces are 48), "
                                  f"got {getattr(self, name)}")
        choices = {"split": SPLITS, "class_weight": CLASS_WEIGHTS, "schedule": SCHEDULES,
                   "checkpoint_on": CHECKPOINT_ON, "mixed_precision": MIXED_PRECISION}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise FerkitError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.fallback_image_size > self.image_size:
            raise FerkitError(f"fallback_image_size ({self.fallback_image_size}) is larger than image_size "
                              f"({self.image_size}): a fallback is lighter (0 keeps image_size)")
        if not 0 < self.train_fraction <= 1:
            raise FerkitError(f"train_fraction is the share of the training faces trained on, above 0 and at most "
                              f"1, got {self.train_fraction}")
        if not self.time_limit >= 0:
            raise FerkitError(f"time_limit must be minutes >= 0 (0: no limit), got {self.time_limit}")
        if not self.learning_rate > 0:
            raise FerkitError(f"learning_rate must be positive, got {self.learning_rate}")
        self.teacher = "" if self.teacher.lower() == "none" else self.teacher
        if self.weights.lower() in ("none", "imagenet"):  # --weights None had been looked for as a file
            self.weights = self.weights.lower()
        if not 0 < self.teacher_weight <= 1:
            raise FerkitError(f"teacher_weight must be in (0, 1], got {self.teacher_weight}")

    def _check_types(self) -> None:
        """A recipe file's `learning_rate = "0.01"` must be a clear error, not a TypeError mid-way."""
        for f in dataclasses.fields(self):
            value, default = getattr(self, f.name), f.default
            if isinstance(default, bool):
                expected, ok = "true or false", isinstance(value, bool)
            elif isinstance(default, (int, float)):
                integer = isinstance(default, int)
                expected = "a whole number" if integer else "a number"
                ok = (isinstance(value, numbers.Integral if integer else numbers.Real)  # numpy's too
                      and not isinstance(value, (bool, np.bool_)))
                if ok and not integer and not math.isfinite(value):  # NaN passes every range check
                    expected, ok = "a finite number", False
                if ok:  # as Python numbers: config.json must serialise them
                    setattr(self, f.name, int(value) if integer else float(value))
            elif isinstance(default, str):
                if isinstance(value, os.PathLike):  # weights, teacher: a path from the Python API
                    setattr(self, f.name, value := os.fspath(value))
                expected, ok = "a string", isinstance(value, str)
            elif f.default_factory is dict:  # model_options: a [model_options] table in a recipe
                expected, ok = "a table of options", isinstance(value, dict)
            else:
                continue
            if not ok:
                raise FerkitError(f"{f.name} must be {expected}, got {value!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def has_fallback(self) -> bool:
        fallback = self.with_fallback()
        return (fallback.model_options, fallback.image_size) != (self.model_options, self.image_size)

    @property
    def fallback_epochs(self) -> float:
        """The fewest epochs of its own network that a recipe trains rather than its fallback:
        `fallback_below`, or 60% of its epochs where that is fewer. The fallback pays only by training
        more epochs than the own network fits, and it never trains more than `epochs`: with `--epochs
        10` the default's own network trains wherever 6 fit, as before `fallback_below` (capped at
        `epochs` instead, 9 of 10 fitting had sent it to a fallback that gains one epoch)."""
        share = FALLBACK_BELOW * self.epochs
        return min(self.fallback_below, share) if self.fallback_below else share

    def with_fallback(self) -> TrainConfig:
        """This configuration training its fallback network (`fallback_model_options` in force, on
        faces of `fallback_image_size` when set)."""
        options = {**self.model_options, **self.fallback_model_options}
        return TrainConfig.from_dict({**self.to_dict(), "model_options": options,
                                      "image_size": self.fallback_image_size or self.image_size})

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = cls.fields()
        if set(values) - known:
            raise FerkitError(unknown_fields(set(values) - known, known))
        return cls(**values)

    @property
    def run_name(self) -> str:
        """What its run's folder is named after (runs/<name>-<timestamp>)."""
        return self.recipe or "train"

    @classmethod
    def fields(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def from_recipe(cls, recipe: str = DEFAULT_RECIPE, **overrides: Any) -> TrainConfig:
        """The recipe's values, then every override that is not None."""
        given = {k: v for k, v in overrides.items() if v is not None}
        recipe_values = load_recipe(recipe, known=cls.fields())  # a typo in a file: said with the file's name
        config = cls.from_dict({**without_stale_fallback(recipe_values, given), **given})
        try:
            stock = cls.from_dict(recipe_values)
        except FerkitError:  # a flag mended a field the recipe got wrong
            stock = None
        # as the run has them (classes in order), with a fallback or options the changes dropped
        implied = [] if stock is None else ["model_options", "fallback_model_options", "fallback_image_size"]
        keys = [*given, *(k for k in implied if k not in given)]
        changed = {k: getattr(config, k) for k in keys if stock is None or getattr(stock, k) != getattr(config, k)}
        if changed:  # the recipe's own words no longer describe the run alone (`ferkit info` prints them)
            config.description = with_changes(config.description, "for this run", changed)
        return config

    def warn_unread(self, given: dict[str, Any]) -> None:
        """Warns of each of the `given` fields that this configuration never reads: a flag that changes
        nothing must say so, not let a user believe it was tried."""
        no_teacher = "there is no teacher (--teacher none)"
        reasons = {"warmup_epochs": (self.schedule == "constant" and self.warmup_epochs > 0,
                                     "the constant schedule has no warm-up (--schedule cosine has)"),
                   "teacher_weight": (not self.teacher, no_teacher),
                   "teacher_flip": (not self.teacher and self.teacher_flip, no_teacher)}
        for name, (unread, why) in reasons.items():
            if name in given and unread:
                log.warning("%s: %s = %r is not used: %s", self.recipe or "training", name, given[name], why)
