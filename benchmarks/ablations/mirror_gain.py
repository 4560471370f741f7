"""What averaging each face with its mirror image adds to trained runs, on their validation and test splits.

    python benchmarks/ablations/mirror_gain.py DATA RUN [RUN ...] [--keep DIR]

For each run: accuracy of its network alone (one pass per face), of the same weights
mirror-averaged (ferkit.models.mirror, what `mirror_average = true` saves), and of the network
alone with `--tta`'s six views (a run saved mirror-averaged is unwrapped for those two).
Validation is what the choice is made on; the test split is printed beside it. Not a test: it
only prints.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from ferkit.evaluation.evaluate import predict_split  # noqa: E402
from ferkit.models.mirror import MirrorAverage, mirror_averaged  # noqa: E402
from ferkit.runs import RunDir, load_keras_model, write_json  # noqa: E402


def copies(run: Path, folder: Path) -> tuple[Path, Path]:
    """Two run directories in `folder` with `run`'s configuration: its network alone, and mirror-averaged."""
    model, _ = load_keras_model(run)
    if any(isinstance(layer, MirrorAverage) for layer in model.layers):  # trained with mirror_average
        model = model.get_layer("mirror_average").inner
    paths = []
    for kind, saved in (("alone", model), ("mirrored", mirror_averaged(model))):
        copy = RunDir(folder / f"{run.name}-{kind}")
        copy.path.mkdir()
        # The config says which it is: `--tta` leaves out the mirrored view for a mirror-averaged model.
        write_json(copy.config, {**RunDir(run).read_config(), "mirror_average": kind == "mirrored"})
        saved.save(copy.keras_model)
        paths.append(copy.path)
    return paths[0], paths[1]


def accuracy(model: Path, data: str, split: str, tta: bool = False) -> float:
    probs, labels = predict_split(model, data, split, tta=tta)
    return float((probs.argmax(1) == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data")
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="write the two copies of each run here and keep them (for `ferkit evaluate`)")
    args = parser.parse_args()
    print("| run | split | network alone | mirror-averaged | `--tta` (6 views) |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for run in args.runs:
            alone, mirrored = copies(run, folder)
            for split in ("val", "test"):
                plain, mirror = accuracy(alone, args.data, split), accuracy(mirrored, args.data, split)
                print(f"| {run.name} | {split} | {plain:.4f} | {mirror:.4f} ({100 * (mirror - plain):+.2f}) "
                      f"| {accuracy(alone, args.data, split, tta=True):.4f} |", flush=True)


if __name__ == "__main__":
    main()
