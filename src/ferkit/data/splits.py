"""Train / validation / test splits: the seed project's random 80/10/10, or FER2013's official usage."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.model_selection import train_test_split

from ferkit.choices import SPLITS
from ferkit.data.sources import FerDataset
from ferkit.errors import FerkitError

log = logging.getLogger("ferkit")


@dataclass
class Split:
    """Faces (uint8 N x 48 x 48) and labels as indices into the run's class list."""

    images: np.ndarray
    labels: np.ndarray
    names: np.ndarray | None = None  # where each face came from (`FerDataset.names`), where known

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, which: np.ndarray) -> Split:
        """The faces `which` (indices or a mask) picks, their names with them."""
        return Split(self.images[which], self.labels[which], None if self.names is None else self.names[which])


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    description: str  # says which protocol produced them, for the log and metrics.json
    # The parts drawn at random from the faces training had too: another copy of the data (a face
    # more or less) draws them anew, training faces among them
    carved: tuple[str, ...] = ()

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def fingerprint(self) -> dict[str, Any]:
        """The parts' sizes and a digest of their faces and labels, in order: a resumed run checks that
        its data still splits into the faces it started with (a tenth of a second for FER2013).
        Each part's own digest too, for `evaluate` to judge the one part it rebuilds."""
        digest, parts = hashlib.sha256(), {}
        for name in ("train", "val", "test"):
            part, own = getattr(self, name), hashlib.sha256()
            for bytes_ in (np.ascontiguousarray(part.images).tobytes(), np.asarray(part.labels, np.int64).tobytes()):
                digest.update(bytes_)
                own.update(bytes_)
            parts[name] = own.hexdigest()
        return {"sizes": self.sizes(), "sha256": digest.hexdigest(), "parts": parts}


def select_classes(data: FerDataset, classes: tuple[str, ...],
                   require_all: bool = True) -> tuple[FerDataset, int]:
    """Keep only `classes`, relabelled 0..k-1 in that order; returns the subset and how many left out.

    Training needs every class it asks for (`require_all`); evaluating may meet data lacking some.
    """
    empty = [c for c in classes if c not in data.class_counts()]
    if empty and require_all:
        rest = [c for c in classes if c not in empty]
        raise FerkitError(f"no images of class(es) {', '.join(empty)} in {data.source}"
                          + (f": train on the others with --classes {','.join(rest)}" if len(rest) > 1 else ""))
    remap = np.full(len(data.classes), -1)
    for new, name in enumerate(classes):
        if name in data.classes:
            remap[data.classes.index(name)] = new
    new_labels = remap[data.labels]
    keep = new_labels >= 0
    subset = FerDataset(data.images[keep], new_labels[keep], data.usage[keep], data.source, data.skipped,
                        tuple(classes), None if data.names is None else data.names[keep])
    return subset, int((~keep).sum())


def make_splits(
    data: FerDataset,
    kind: str = "random",
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    drop_repeats: bool = False,
) -> Splits:
    """Split `data` (already reduced to the run's classes) into train/val/test.

    `random` merges everything and splits stratified by class with a fixed seed (the seed
    project's protocol). `official` keeps FER2013's Training part for training. PublicTest and
    PrivateTest, when both are there, validate and test. One of them alone (the usual `train/` +
    `test/` download) is the test set, and a validation folder beside it validates, or else the val
    fraction of Training does. A validation folder alone (`train/` + `validation/`, a layout shared
    on Kaggle) is the test set.

    `drop_repeats` leaves out of the parts carved at random (`Splits.carved`) every face that repeats
    a training face pixel for pixel: FER2013's Training part holds 1,035 groups of identical faces,
    and 214 of the default's 2,871 validation faces were such repeats, scored 89% against 69% for the
    rest: the network's memory had a say in which epoch was kept. FER2013's own test parts stay whole: they
    are the benchmark as published (`ferkit.evaluation` reports their repeats apart).
    """
    check_fractions(fractions, kind)
    if kind == "random":
        splits = _random(data, fractions, seed)
    elif kind == "official":
        splits = _official(data, fractions[1], seed)
    else:
        raise FerkitError(f"unknown split {kind!r}; choose from {', '.join(SPLITS)}")
    return _without_repeats(splits) if drop_repeats else splits


def train_share(splits: Splits, fraction: float, seed: int) -> Splits:
    """The splits with their training part cut to `fraction` of its faces, each class in proportion
    (one face at least), in their order; validation and test untouched, so that the scores compare
    with a full run's: a quick trial, or a learning curve, whose smaller shares of one seed are
    subsets of its larger ones."""
    if fraction >= 1:
        return splits
    train, rng = splits.train, np.random.default_rng(seed)
    classes = [np.flatnonzero(train.labels == label) for label in np.unique(train.labels)]
    raised = sum(round(fraction * len(faces)) < 1 for faces in classes)  # too few for a share: one face each
    kept = [rng.permutation(faces)[:max(1, round(fraction * len(faces)))] for faces in classes]
    cut = train.take(np.sort(np.concatenate(kept)))
    how = f"{raised} of its {len(classes)} classes raised to one face" if raised else "each class in proportion"
    return dataclasses.replace(splits, train=cut, description=f"{splits.description}; training part cut to "
                               f"{fraction:.3g} of its faces ({len(cut):,} of {len(train):,}, {how})")


def check_fractions(fractions: tuple[float, float, float], kind: str = "random") -> None:
    """Three shares that sum to 1. The official split uses only val's (a 0 there cannot carve out a
    val part): its train and test shares may be 0, as in 0.9,0.1,0, which had been refused."""
    needed = fractions[1:2] if kind == "official" and len(fractions) == 3 else fractions
    if (len(fractions) != 3 or not all(f >= 0 for f in fractions) or not all(0 < f < 1 for f in needed)
            or not abs(sum(fractions) - 1) <= 1e-6):  # NaN too
        which = ("a val share between 0 and 1" if kind == "official" else "three positive numbers"
                 + (" (a share of 0 is for the official split's train and test parts)" if 0 in fractions else ""))
        raise FerkitError(f"split fractions must be three numbers (train,val,test) that sum to 1, {which}, "
                          f"got {fractions}")


def _random(data: FerDataset, fractions, seed: int) -> Splits:
    train_f, val_f, test_f = fractions
    idx = np.arange(len(data))
    said: set[str] = set()
    rest, test, first = _stratified(idx, data.labels, test_f, seed, data.classes, said)
    train, val, second = _stratified(rest, data.labels, val_f / (train_f + val_f), seed, data.classes, said)
    pct = "/".join(f"{f * 100:.3g}" for f in fractions)  # 0.001 had read "0"
    return Splits(
        _take(data, train), _take(data, val), _take(data, test),
        f"random{' stratified' if first and second else ''} {pct} train/val/test split of all {len(data)} images "
        f"(seed {seed})", ("val", "test"),
    )


HELD_OUT = ("public", "private", "val")  # FER2013's two test parts, and a validation folder (sources.py)


_PART_NAMES = {"public": "PublicTest", "private": "PrivateTest", "val": "the validation folder"}


def has_usage(data: FerDataset) -> bool:
    """Whether `data` says which faces are FER2013's Training part and which are held out."""
    return bool((data.usage == "train").any() and np.isin(data.usage, HELD_OUT).any())


def _held_out_usages(parts: dict[str, np.ndarray]) -> tuple[str | None, str]:
    """Which held-out parts the official split validates and tests on: PublicTest and PrivateTest where
    both are there (FER2013's own protocol); else the one test part, validated on by a validation
    folder beside it, or by faces drawn from Training (None)."""
    if len(parts["public"]) and len(parts["private"]):
        return "public", "private"
    test = "public" if len(parts["public"]) else "private" if len(parts["private"]) else "val"
    return ("val" if test != "val" and len(parts["val"]) else None), test


def held_out_alone(data: FerDataset, name: str) -> tuple[Split, str] | None:
    """The held-out part of FER2013 that the official split would use as `name` ("val", "test"), taken
    from data with no Training part (a copy of the test/ folder alone is enough to score a model),
    and the parts named as the split's description names them. None where that split draws the part
    from Training (validation beside one test part), or the data has no such part."""
    parts = {usage: np.flatnonzero(data.usage == usage) for usage in HELD_OUT}
    val, test = _held_out_usages(parts)
    usage = test if name == "test" else val
    if usage is None or not len(parts[usage]):
        return None
    named = f"val = {_PART_NAMES[val]}, test = {_PART_NAMES[test]}" if name == "val" else f"test = {_PART_NAMES[test]}"
    return _take(data, parts[usage]), named


def _official(data: FerDataset, val_fraction: float, seed: int) -> Splits:
    parts = {u: np.flatnonzero(data.usage == u) for u in ("train", *HELD_OUT)}
    if not len(parts["train"]) and np.isin(data.usage, HELD_OUT).any():
        held = ", ".join(f"{len(parts[usage])} of {_PART_NAMES[usage]}" for usage in HELD_OUT if len(parts[usage]))
        raise FerkitError(f"{data.source} holds FER2013's held-out faces ({held}) but none of its Training part "
                          "(files Training_*, a train/ folder, a CSV's Usage Training) to train on")
    if len(parts["train"]) and not np.isin(data.usage, HELD_OUT).any():
        raise FerkitError(f"{data.source} holds {len(parts['train'])} Training faces but none held out to test on "
                          "(file names PublicTest_/PrivateTest_, a test/ or validation/ folder beside train/, or a "
                          "CSV's Usage PublicTest, PrivateTest, test or validation): add such a part, or use "
                          "--split random")
    if not has_usage(data):
        raise FerkitError(
            f"{data.source} says of no face which part of FER2013 it is in (a CSV's Usage column, file "
            "names Training_/PublicTest_/PrivateTest_, or folders train/ beside test/ or validation/): "
            "name your folders so, or use --split random, which splits every face it loads at random "
            "(the faces you meant for testing too)"
        )
    if _held_out_usages(parts)[0] == "public":  # FER2013's own protocol: a val/ folder beside it has no place
        parts["val"] = parts["val"][:0]
    unknown = len(data) - sum(len(idx) for idx in parts.values())
    # Faces of no known part (a val/ folder beside both test parts, a CSV's own Usage value) have no
    # place in the protocol: said, and written into the split's description (metrics.json), never
    # dropped silently.
    left = f"; {unknown} faces of no FER2013 part left out" if unknown else ""
    if unknown:
        log.warning("official split: %d faces are neither Training nor PublicTest/PrivateTest (e.g. a val/ "
                    "folder beside both, or another Usage value) and are left out; --split random uses "
                    "every face", unknown)
    val_usage, test_usage = _held_out_usages(parts)
    test_name = _PART_NAMES[test_usage]
    if val_usage is not None:  # PublicTest beside PrivateTest, or a validation part the data's maker set aside
        return Splits(
            _take(data, parts["train"]), _take(data, parts[val_usage]), _take(data, parts[test_usage]),
            f"official split: train = Training, val = {_PART_NAMES[val_usage]}, test = {test_name}{left}",
        )
    # One held-out part (the usual train/ + test/ download, or train/ + validation/): the test set;
    # validation, which picks the kept epoch, is carved out of Training so the test set stays unseen.
    train, val, stratified = _stratified(parts["train"], data.labels, val_fraction, seed, data.classes, set())
    return Splits(
        _take(data, train), _take(data, val), _take(data, parts[test_usage]),
        f"official split: train/val = {'stratified' if stratified else 'random'} {1 - val_fraction:.0%}/"
        f"{val_fraction:.0%} of "
        f"Training (seed {seed}), test = {test_name}{left}", ("val",),
    )


def _stratified(idx: np.ndarray, labels: np.ndarray, fraction: float, seed: int, classes: tuple[str, ...],
                said: set[str]) -> tuple[np.ndarray, np.ndarray, bool]:
    """Split `idx` stratified by class; whether it could be. A class of one face there cannot be on
    both sides: it goes to training and the rest is stratified (it had turned stratification off
    for every class, in silence: one class of 1 face left 1 happy face of 26 to test on). Where the
    held-out part is smaller than the number of classes, it is split at random, and said so: a
    small folder is still worth a quick trial run."""
    if len(idx) < 2:
        raise FerkitError(f"{len(idx)} face(s) cannot be split into training and held-out parts: "
                          "give more faces")
    held_out = math.ceil(fraction * len(idx))
    if held_out >= len(idx):  # sklearn's own error said less: a share of 99% of 50 faces is all of them
        raise FerkitError(f"a held-out share of {fraction:.3g} of {len(idx)} faces leaves none to train on: "
                          "give a smaller one (--fractions) or more faces")
    counts = np.bincount(labels[idx], minlength=len(classes))
    single = np.isin(labels[idx], np.flatnonzero(counts == 1))
    rest = idx[~single]  # the faces to split; a class's one face (here) goes to training
    present = np.bincount(labels[rest])
    present = present[present > 0]
    if not len(rest) - held_out >= len(present) <= held_out:  # a part too small to hold each class once
        log.warning("split at random, not stratified by class: %d held-out or %d training faces cannot hold "
                    "each of %d classes", held_out, len(idx) - held_out, len(present))
        train, other = train_test_split(idx, test_size=fraction, random_state=seed)
        return train, other, False
    names = [classes[label] for label in np.flatnonzero(counts == 1) if classes[label] not in said]
    if names:  # once for a split made in two steps (test, then val)
        log.warning("only one face of %s to split here: trained on, since it cannot be both trained on and held out",
                    ", ".join(names))
        said.update(names)
    # As many held out as asked, a whole number: the same draw as before for data with no such class
    train, other = train_test_split(rest, test_size=held_out if single.any() else fraction, random_state=seed,
                                    stratify=labels[rest])
    return np.concatenate([train, idx[single]]), other, True


def face_keys(faces: np.ndarray) -> np.ndarray:
    """64 bits of BLAKE2b over each face's pixels: a face that is not in a table of FER2013's 27,473
    distinct Training faces matches one that is by chance once in about 7 * 10^14 faces."""
    faces = np.ascontiguousarray(faces, dtype=np.uint8)
    return np.array([int.from_bytes(hashlib.blake2b(face.tobytes(), digest_size=8).digest(), "little")
                     for face in faces], dtype=np.uint64)


def repeats_training(part: Split, train: Split) -> np.ndarray:
    """Which of `part`'s faces repeat one of `train`'s pixel for pixel."""
    return np.isin(face_keys(part.images), face_keys(train.images))


def _without_repeats(splits: Splits) -> Splits:
    dropped = {}
    for name in splits.carved:
        part = getattr(splits, name)
        keep = ~repeats_training(part, splits.train)
        if not keep.any():  # a small folder of copies: nothing left to validate or test on
            raise FerkitError(f"every one of the {len(part)} faces drawn to {'validate' if name == 'val' else 'test'} "
                              "on repeats a training face: give more distinct faces, a larger share "
                              "(--fractions), or --drop-repeats off")
        setattr(splits, name, part.take(keep))
        dropped[name] = int((~keep).sum())
    said = ", ".join(f"{n} {'validation' if name == 'val' else 'test'}" for name, n in dropped.items() if n)
    if said:
        splits.description += f"; left out as repeats of training faces: {said} faces"
    return splits


def _take(data: FerDataset, idx: np.ndarray) -> Split:
    return Split(data.images, data.labels, data.names).take(idx)
