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
from ferkit.inference.backends import load_backend, predict_scores  # noqa: E402
from ferkit.inference.tta import VIEWS, views  # noqa: E402


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
            scores = [f"{np.mean(backend.predict(view).argmax(1) == faces.labels):.4f}"
                      for view in views(faces.batch)]
            tta = predict_scores(backend, faces.batch, tta=True).argmax(1)
            print(f"| {os.path.basename(run)} | {split} | {' | '.join(scores)} "
                  f"| {np.mean(tta == faces.labels):.4f} |", flush=True)


if __name__ == "__main__":
    main()
