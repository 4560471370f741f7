"""What averaging each face with its mirror image adds to trained runs, on their validation and test splits.

    python benchmarks/ablations/mirror_gain.py DATA RUN [RUN ...] [--keep DIR]

For each run: accuracy of its network alone (one pass per face), of the same weights
mirror-averaged (ferkit.models.mirror, what `mirror_average = true` saves), and of the network
alone with `--tta`'s six views (a run saved mirror-averaged is unwrapped for those two).
Validation is what the choice is made on; the test split is printed beside it. Not a test: it
only prints.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run_copies import arguments, copies_folder, network, save_copy  # noqa: E402

from ferkit.evaluation.evaluate import predict_split  # noqa: E402
from ferkit.models.mirror import mirror_averaged  # noqa: E402
from ferkit.models.loading import load_keras_model  # noqa: E402


def copies(run: Path, folder: Path) -> tuple[Path, Path]:
    """Two run directories in `folder` with `run`'s configuration: its network alone, and mirror-averaged."""
    model = network(load_keras_model(run)[0])
    # The config says which it is: `--tta` leaves out the mirrored view for a mirror-averaged model.
    return (save_copy(run, folder / f"{run.name}-alone", model, mirror_average=False),
            save_copy(run, folder / f"{run.name}-mirrored", mirror_averaged(model), mirror_average=True))


def accuracy(model: Path, data: str, split: str, tta: bool = False) -> float:
    probs, labels = predict_split(model, data, split, tta=tta)
    return float((probs.argmax(1) == labels).mean())


def main() -> None:
    args = arguments(__doc__, "the two copies of each run").parse_args()
    print("| run | split | network alone | mirror-averaged | `--tta` (6 views) |\n|---|---|---|---|---|")
    with copies_folder(args.keep) as folder:
        for run in args.runs:
            alone, mirrored = copies(run, folder)
            for split in ("val", "test"):
                plain, mirror = accuracy(alone, args.data, split), accuracy(mirrored, args.data, split)
                print(f"| {run.name} | {split} | {plain:.4f} | {mirror:.4f} ({100 * (mirror - plain):+.2f}) "
                      f"| {accuracy(alone, args.data, split, tta=True):.4f} |", flush=True)


if __name__ == "__main__":
    main()
