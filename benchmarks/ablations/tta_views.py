"""What each of `--tta`'s views scores on its own, on trained runs' validation and test splits.

    python benchmarks/ablations/tta_views.py DATA RUN [RUN ...]

`--tta` averages a face with its mirror image and four copies shifted by two pixels. When it
lowers a run's accuracy, this says whether one view is to blame or all the shifted ones, and
whether validation (what choices are made on) agrees with the test split. Not a test: it only
prints.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from ferkit.evaluation.evaluate import load_split  # noqa: E402
from ferkit.inference.backends import load_backend  # noqa: E402
from ferkit.inference.tta import VIEWS, predict_tta  # noqa: E402


def view_scores(backend, batch: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Each view's probabilities and `--tta`'s average, from the one pass `predict_tta` makes.

    A mirror-averaged model has no mirrored view: it would score exactly as the face.
    """
    passes = []

    def predict(stacked: np.ndarray) -> np.ndarray:
        passes.append(backend.predict(stacked))
        return passes[-1]

    mirrored = backend.info.mirror_averaged
    tta = predict_tta(predict, batch, mirrored)
    names = [v for v in VIEWS if not (mirrored and v == "flip")]
    return dict(zip(names, passes[0].reshape(len(names), len(batch), -1))), tta


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+")
    args = parser.parse_args()
    print(f"| run | split | {' | '.join(VIEWS)} | `--tta` |\n|---|---|{'---|' * (len(VIEWS) + 1)}")
    for run in args.runs:
        backend = load_backend(run)
        for split in ("val", "test"):
            faces = load_split(backend, run, args.data, split)
            per_view, tta = view_scores(backend, faces.batch)
            per_view.setdefault("flip", per_view["identity"])  # mirror-averaged: the same scores
            cells = [f"{np.mean(per_view[v].argmax(1) == faces.labels):.4f}" for v in VIEWS]
            print(f"| {os.path.basename(run)} | {split} | {' | '.join(cells)} "
                  f"| {np.mean(tta.argmax(1) == faces.labels):.4f} |", flush=True)


if __name__ == "__main__":
    main()
