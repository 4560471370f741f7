"""Emotion names: the single source of truth for class names everywhere (CLI, files, API)."""

from __future__ import annotations

from collections.abc import Iterable

from ferkit.errors import FerkitError

EMOTIONS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")

# fer2013.csv's integer codes; note that the CSV orders them differently from EMOTIONS.
CSV_CODES: dict[int, str] = {
    0: "angry", 1: "disgust", 2: "fear", 3: "happy", 4: "sad", 5: "surprise", 6: "neutral",
}

# Folder names other FER datasets use for the same classes (Kaggle's "emotion detection" copies of
# FER2013 say angry, disgusted, fearful, happy, neutral, sad, surprised).
FOLDER_NAMES: dict[str, str] = {**{name: name for name in EMOTIONS}, "anger": "angry", "disgusted": "disgust",
                                "fearful": "fear", "happiness": "happy", "sadness": "sad", "surprised": "surprise"}

# The original project's six classes: disgust dropped for being rare.
SEED_CLASSES: tuple[str, ...] = tuple(e for e in EMOTIONS if e != "disgust")


def parse_classes(spec: str | Iterable[str] | None) -> tuple[str, ...]:
    """Turn 'angry,fear' (or a list, or None for all) into names in canonical EMOTIONS order.

    A fixed order means a model's output index means the same class in every run that uses
    the same subset, whatever order the user typed them in.
    """
    if spec is None:
        return EMOTIONS
    given = spec.split(",") if isinstance(spec, str) else list(spec)
    if not all(isinstance(name, str) for name in given):
        raise FerkitError(f"classes must be names, got {given!r}")
    names = [s.strip().lower() for s in given]
    names = [FOLDER_NAMES.get(n, n) for n in names if n]  # "anger", as a folder may be named, is angry
    unknown = sorted(set(names) - set(EMOTIONS))
    if unknown:
        raise FerkitError(
            f"unknown class name(s) {', '.join(unknown)}; choose from {', '.join(EMOTIONS)}"
        )
    if len(set(names)) < 2:
        raise FerkitError("choose at least two distinct classes")
    return tuple(e for e in EMOTIONS if e in names)
