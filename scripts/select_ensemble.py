"""Choose an ensemble from trained runs on their validation split (greedy forward selection).

    python scripts/select_ensemble.py DATA RUN [RUN ...] [--max N] [--tta]

Starts from the run with the best validation accuracy and keeps adding the run whose averaged
probabilities raise it most, until none does or N runs are in (each member adds to the bundle's
size and inference time). Only the validation split is used, so the test split stays unseen.
All runs must share one validation split: the same data file, protocol and seed.
Prints each run's own accuracy and the ensemble after each step; give the chosen runs to
scripts/bundle_model.py.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError
from ferkit.evaluation.evaluate import predict_split
from ferkit.models.ensemble import select_members


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--max", type=int, default=4, help="most members (default 4)")
    parser.add_argument("--tta", action="store_true", help="choose on test-time-augmented predictions")
    args = parser.parse_args()
    if args.max < 1:
        parser.error(f"--max: at least 1 member, got {args.max}")
    logging.basicConfig(level=logging.WARNING)
    if not Path(args.data).exists():  # else said once per run, each then left out
        raise SystemExit(f"data not found: {args.data}")
    probs, labels = {}, None
    for run in args.runs:
        try:
            probs[run], run_labels = predict_split(run, args.data, split="val", tta=args.tta)
        except FerkitError as exc:  # a run a deadline cut before it was saved (dist-*/ names it too)
            print(f"{run}: left out: {exc}")
            continue
        if labels is not None and not np.array_equal(labels, run_labels):
            raise SystemExit(f"{run} has another validation split than {next(iter(probs))}: cannot compare")
        labels = run_labels
        print(f"{run}: validation accuracy {(probs[run].argmax(1) == labels).mean():.4f}")
    if not probs:
        raise SystemExit("none of the runs could be scored")
    print("greedy selection:")
    steps = select_members(probs, labels, args.max)
    for i, (name, score) in enumerate(steps, 1):
        print(f"  + {name}: ensemble of {i} -> {score:.4f}")
    print("chosen:", " ".join(name for name, _ in steps))


if __name__ == "__main__":
    main()
