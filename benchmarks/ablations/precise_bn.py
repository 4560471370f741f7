"""What recomputing BatchNorm statistics after training (precise BN) adds to trained runs.

    python benchmarks/ablations/precise_bn.py DATA RUN [RUN ...] [--faces N] [--keep DIR]

For each run: accuracy and macro-F1 on its validation and test splits of the model it saved, and
of a copy whose statistics ferkit.training.batchnorm recomputed on the run's own training faces
(split again as the run split them), as `precise_bn = true` does when training ends. A run that
trained with precise BN gives the same figures twice. (For a frozen backbone's head trained on
cached features the trainer recomputes on those, computed in the run's precision; this script runs
the float32 model.) Validation is what the choice is made on; the test split is printed beside
it. Not a test: it only prints.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from run_copies import arguments, copies_folder, network, run_splits, save_copy  # noqa: E402

from ferkit.data.preprocess import to_model_input  # noqa: E402
from ferkit.evaluation.evaluate import predict_split  # noqa: E402
from ferkit.evaluation.metrics import classification_metrics  # noqa: E402
from ferkit.models.loading import load_keras_model  # noqa: E402
from ferkit.runs import RunDir  # noqa: E402
from ferkit.training import batchnorm  # noqa: E402


def recomputed_copy(run: Path, data: str, folder: Path, faces: int) -> Path:
    """A run directory in `folder` holding `run`'s model with its BatchNorm statistics recomputed."""
    config, splits = run_splits(run, data)
    model, _ = load_keras_model(run)
    batchnorm.recompute(network(model), batchnorm.batches_of(to_model_input(splits.train.images, config.image_size),
                                                             config.seed, limit=faces))
    return save_copy(run, folder / f"{run.name}-precise-bn", model, precise_bn=True)


def scores(model: Path, data: str, split: str) -> str:
    probs, labels = predict_split(model, data, split)
    metrics = classification_metrics(labels, probs, RunDir(model).read_config()["classes"])
    return f"{metrics['accuracy']:.4f} ({metrics['macro_f1']:.3f})"


def main() -> None:
    parser = arguments(__doc__, "the recomputed copy of each run")
    parser.add_argument("--faces", type=int, default=batchnorm.FACES,
                        help=f"training faces the statistics are averaged over (default {batchnorm.FACES})")
    args = parser.parse_args()
    print("| run | split | saved: accuracy (macro-F1) | precise BN |\n|---|---|---|---|")
    with copies_folder(args.keep) as folder:
        for run in args.runs:
            copy = recomputed_copy(run, args.data, folder, args.faces)
            for split in ("val", "test"):
                print(f"| {run.name} | {split} | {scores(run, args.data, split)} | "
                      f"{scores(copy, args.data, split)} |", flush=True)


if __name__ == "__main__":
    main()
