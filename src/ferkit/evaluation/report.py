"""Writing what a run or an evaluation produced: metrics.json and its figures."""

from __future__ import annotations

from typing import Any

from ferkit.evaluation.plots import plot_confusion, plot_curve
from ferkit.runs import RunDir, read_history, write_json


def write_metrics(run: RunDir, metrics: dict[str, Any], title: str) -> None:
    write_json(run.metrics, metrics)
    acc = metrics["accuracy"]
    plot_confusion(metrics["confusion_matrix"], metrics["classes"], run.confusion_plot,
                   f"Confusion matrix, {title} (accuracy {acc:.1%})")


def write_history_plots(run: RunDir) -> None:
    history = read_history(run.history)
    plot_curve(history, "loss", run.loss_plot, "Loss")
    plot_curve(history, "accuracy", run.accuracy_plot, "Accuracy")
