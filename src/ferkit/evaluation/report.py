"""Writing what a run or an evaluation produced: metrics.json, each face's prediction and their figures."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from typing import Any

import numpy as np

from ferkit.evaluation.plots import plot_confusion, plot_curve, plot_mistakes
from ferkit.runs import RunDir, read_history, replacing, write_json


def write_metrics(run: RunDir, metrics: dict[str, Any], title: str) -> None:
    write_json(run.metrics, metrics)
    acc = metrics["accuracy"]
    plot_confusion(metrics["confusion_matrix"], metrics["classes"], run.confusion_plot,
                   f"Confusion matrix, {title} (accuracy {acc:.1%})")


def write_history_plots(run: RunDir, saved: tuple[int | None, float] | None = None) -> None:
    """loss.png and accuracy.png; `saved`: the kept epoch and the saved model's validation accuracy,
    marked on the accuracy curve."""
    history = read_history(run.history)
    plot_curve(history, "loss", run.loss_plot, "Loss")
    plot_curve(history, "accuracy", run.accuracy_plot, "Accuracy", saved=saved)


def write_predictions(run: RunDir, faces: np.ndarray, labels: np.ndarray, probs: np.ndarray,
                      classes: Sequence[str], names: np.ndarray | None, repeats: np.ndarray | None,
                      title: str) -> None:
    """predictions.csv, a row per face (where it came from, its label, the model's answer and every
    class's probability), and mistakes.png: what a student looks at after the confusion matrix, to
    see which faces the model gets wrong, and pandas or a spreadsheet can read."""
    predicted = probs.argmax(axis=1)
    with replacing(run.predictions) as part, open(part, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["face", "true", "predicted", "confidence", "correct", "repeats_training",
                         *(f"p_{name}" for name in classes)])
        for i, (label, guess) in enumerate(zip(labels, predicted)):
            writer.writerow([i if names is None else names[i], classes[label], classes[guess],
                             f"{probs[i, guess]:.6f}", int(label == guess),  # 4 decimals had shown ties
                             "" if repeats is None else int(repeats[i]),  # unknown without a training part
                             *(f"{p:.6f}" for p in probs[i])])
    plot_mistakes(faces, labels, probs, classes, names, run.mistakes_plot, title)
