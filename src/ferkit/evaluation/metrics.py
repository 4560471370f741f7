"""Classification metrics in the shape of metrics.json, computed with scikit-learn."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

log = logging.getLogger("ferkit")


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                           repeats: np.ndarray | None = None) -> dict[str, Any]:
    """accuracy, macro_f1, per-class precision/recall/f1/support and the confusion matrix.

    macro_f1 averages the classes present in `y_true`: a class the data lacks (a 7-class model on
    6-class data) has no F1 to score, and counting it as 0 would mark a perfect model down.
    `repeats` marks the faces that repeat a training face pixel for pixel (ferkit.data.splits): where
    there are any, `unseen` scores the others too. 266 of PublicTest's 3,589 faces repeat one of the
    default's training faces and were scored 88% against 68% for the rest: the published protocol's
    figure is the headline, and this one says how much of it is memory.
    """
    labels = np.arange(len(classes))
    y_true, y_pred = np.asarray(y_true), np.asarray(probs).argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(classes, precision, recall, f1, support)
    }
    metrics = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": _macro_f1(y_true, y_pred),
        "classes": list(classes),
        "per_class": per_class,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
    }
    if repeats is not None and repeats.any() and not repeats.all():
        unseen = ~np.asarray(repeats, bool)
        metrics["unseen"] = {"faces": int(unseen.sum()), "repeats": int(repeats.sum()),
                             "accuracy": float(accuracy_score(y_true[unseen], y_pred[unseen])),
                             "macro_f1": _macro_f1(y_true[unseen], y_pred[unseen])}
    return metrics


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(f1_score(y_true, y_pred, labels=np.unique(y_true), average="macro", zero_division=0))


def unseen_words(metrics: dict[str, Any]) -> str:
    """The score on the faces that repeat no training face, in words ("" where none do)."""
    unseen = metrics.get("unseen")
    if not isinstance(unseen, dict):
        return ""
    return (f"; on the {unseen['faces']} that repeat no training face ({unseen['repeats']} do): "
            f"accuracy {unseen['accuracy']:.4f}, macro-F1 {unseen['macro_f1']:.4f}")


def warn_if_one_label(metrics: dict[str, Any]) -> None:
    """Said where a model gave all the faces it scored one label, though they are of several: its
    accuracy is that class's share, and no table says why. A student's one-epoch seed-custom run
    called every test face sad (18%): the seed recipes keep training's BatchNorm statistics, which
    one short epoch leaves far from the weights'."""
    given = np.asarray(metrics["confusion_matrix"]).sum(axis=0)
    present = sum(1 for m in metrics["per_class"].values() if m["support"])
    if present > 1 and np.count_nonzero(given) == 1:
        log.warning("the model labelled all %d faces %s: it has learnt little yet (train longer; a short run "
                    "of a seed recipe may need --precise-bn on)", given.sum(), metrics["classes"][int(given.argmax())])


def headline(metrics: dict[str, Any]) -> str:
    """The numbers `train`, `evaluate` and a run's summary lead with, in the same words each time."""
    return f"accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}{unseen_words(metrics)}"


def format_metrics(metrics: dict[str, Any]) -> str:
    """A short human summary: headline numbers, then one line per class."""
    lines = [headline(metrics)]
    for i, (name, m) in enumerate(metrics["per_class"].items()):
        if m["support"]:
            lines.append(f"  {name:<9} precision {m['precision']:.3f}  recall {m['recall']:.3f}  "
                         f"f1 {m['f1']:.3f}  n={m['support']}")
            continue
        # none to score, but faces of other classes given this label are mistakes to show
        wrong = sum(row[i] for row in metrics["confusion_matrix"])
        lines.append(f"  {name:<9} no faces scored" + (f"; {wrong} of other classes labelled {name}" if wrong else ""))
    return "\n".join(lines)
