"""Figures people would rather look at than read: training curves, the confusion matrix and the
faces a model got most confidently wrong."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import ConfusionMatrixDisplay  # noqa: E402

from ferkit.runs import read_history  # noqa: E402


def plot_curve(history: dict[str, list[float]], metric: str, path: Path, title: str,
               saved: tuple[int | None, float] | None = None) -> None:
    """Training vs validation `metric` per epoch. `saved` (epoch, value): the saved model's own
    validation score, marked at the epoch it kept. The curves come from training's model, whose
    BatchNorm statistics are training's moving averages and which scores no mirror image: after one
    epoch the saved model had scored 0.47 where the curve said 0.23."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=110)
    epochs = np.asarray(history.get("epoch", range(len(history.get(metric, []))))) + 1
    for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
        if key in history:
            ax.plot(epochs, history[key], marker="o", markersize=3, label=label)
    if saved is not None and saved[0] is not None:
        ax.plot([saved[0]], [saved[1]], marker="*", markersize=12, linestyle="none", color="tab:red",
                label=f"saved model, validation ({saved[1]:.3f})")
    _epoch_axis(ax, title, ylabel=metric)
    _save(fig, path)


def plot_overlay(histories: dict[str, Path], path: Path) -> None:
    """Validation accuracy and loss per epoch of several runs (history.csv files), one line each.
    One legend below both panels: inside a panel it covered the early epochs, where the curves
    of every recipe rise and no corner is empty."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    for name, history_path in histories.items():
        history = read_history(history_path)
        epochs = np.arange(1, len(history.get("val_loss", [])) + 1)
        for ax, key in zip(axes, ("val_accuracy", "val_loss")):
            ax.plot(epochs, history.get(key, []), marker="o", markersize=3, label=literal(name))
    # Each recipe's loss is its own (label smoothing and a teacher's targets raise it): compare its shape
    for ax, title, ylabel in zip(axes, ("Validation accuracy", "Validation loss"),
                                 ("accuracy", "loss (each recipe's own targets)")):
        _epoch_axis(ax, title, ylabel=ylabel, legend=False)
    lines = axes[0].get_lines()
    columns = max(1, min(len(lines), 4))
    _legend(fig, lines, loc="lower center", ncol=columns, frameon=False)
    _save(fig, path, bottom=0.07 * -(-len(lines) // columns))  # room for the legend's rows


def literal(text: str) -> str:
    """`text` shown as written: matplotlib reads what lies between two $ as mathematics, so a
    folder named `d$x_$` garbled a title, or failed the plot after a whole evaluation."""
    return text.replace("$", r"\$")


def _epoch_axis(ax, title: str, ylabel: str | None = None, legend: bool = True) -> None:
    ax.set(xlabel="epoch", ylabel=ylabel, title=title)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    low, high = ax.get_xlim()
    if high - low < 1:  # one epoch: whole-number ticks around it, not 0.95 ... 1.05 (two span 0.95 ... 2.05)
        ax.set_xlim(round((low + high) / 2) - 1, round((low + high) / 2) + 1)
    ax.grid(alpha=0.3)
    if legend:
        _legend(ax, ax.get_lines())


def _legend(where, lines, **options) -> None:
    """Lines named explicitly: matplotlib leaves a label starting with "_" (a recipe `_noaug.toml`)
    out of a legend it gathers itself."""
    if lines:
        where.legend(lines, [line.get_label() for line in lines], **options)


def _save(fig, path: Path, bottom: float = 0.0) -> None:
    """Closed whether or not it could be written: pyplot keeps every open figure, and a server or a
    notebook that goes on after a failed save would hold each one."""
    try:
        fig.tight_layout(rect=(0, bottom, 1, 1))
        fig.savefig(path)
    finally:
        plt.close(fig)


def plot_confusion(matrix: Sequence[Sequence[int]], classes: Sequence[str], path: Path,
                   title: str) -> None:
    """Row-normalised colours (recall per class) with the raw counts written in each cell."""
    counts = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.1 * len(classes) + 2, 1.1 * len(classes) + 1.5), dpi=110)
    display = ConfusionMatrixDisplay(counts, display_labels=[literal(name) for name in classes]).plot(
        ax=ax, cmap="Blues", colorbar=False, values_format="d", xticks_rotation=45
    )
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    display.im_.set_data(rates)
    display.im_.set_clim(0, 1)
    for text, rate in zip(display.text_.ravel(), rates.ravel()):
        text.set_color("white" if rate > 0.5 else "black")
    # the colours' meaning said: without it they read as counts, which the numbers are
    fig.colorbar(display.im_, ax=ax, fraction=0.046, pad=0.04, label="share of the true class's faces")
    ax.set_title(literal(title))
    _save(fig, path)


def plot_mistakes(faces: np.ndarray, labels: np.ndarray, probs: np.ndarray, classes: Sequence[str],
                  names: Sequence[str] | None, path: Path, title: str, count: int = 24) -> None:
    """The faces the model got wrong with the most confidence, each with its label, the model's answer
    and the file it came from: on FER2013 many are mislabelled or ambiguous faces, which a
    confusion matrix cannot show."""
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    wrong = np.flatnonzero(predicted != labels)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:count]
    columns = 6
    rows = max(1, -(-len(shown) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.95 * rows + 0.6), dpi=110, squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), shown):
        ax.imshow(np.asarray(faces[i]).squeeze(), cmap="gray", vmin=0, vmax=255)
        ax.set_title(literal(f"{classes[labels[i]]} → {classes[predicted[i]]}\n{confidence[i]:.0%}"), fontsize=8)
        if names is not None:  # the file, to find it again: its name without the folders, which the CSV has
            ax.text(0.5, -0.04, literal(Path(str(names[i])).name), transform=ax.transAxes, ha="center", va="top",
                    fontsize=5.5)
    if not len(shown):
        axes[0, 0].text(0, 0.5, "no face was classified wrongly", fontsize=10)
    said = (f"the {len(shown)} most confident of {len(wrong):,} mistakes (true → predicted, confidence)"
            if len(shown) else f"no mistakes on its {len(labels):,} faces")
    fig.suptitle(literal(f"{title}: {said}"), fontsize=9)
    _save(fig, path)
