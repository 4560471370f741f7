"""`ferkit evaluate`: a trained model's metrics on FER2013 data."""

from __future__ import annotations

import argparse

from ferkit.choices import EVAL_SPLITS
from ferkit.cli._common import nonempty


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate", help="evaluate a trained model on FER2013 data",
                       description="Accuracy, macro-F1, per-class scores and a confusion matrix.")
    p.add_argument("model", type=nonempty, help="default (the bundled model), a run directory, a .keras or .onnx file")
    p.add_argument("data", type=nonempty, help="fer2013.csv, an image folder or a .zip")
    p.add_argument("--split", choices=EVAL_SPLITS, default="test",
                   help="test (default) or val: the model's own test or validation split rebuilt on DATA; "
                        "all: every face")
    p.add_argument("--output", type=nonempty, metavar="DIR",
                   help="write metrics.json, confusion_matrix.png, predictions.csv and mistakes.png here")
    p.add_argument("--tta", action="store_true", help="test-time augmentation (flip + shifts averaged)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.cli._common import keras_imported_quietly, outputs
    from ferkit.evaluation import evaluate
    from ferkit.evaluation.metrics import headline

    with outputs() as output_path:
        output_path(args.output, folder=True)  # a bad --output must not cost the evaluation
        keras_imported_quietly(args.model)
        metrics = evaluate(args.model, args.data, split=args.split, output=args.output, tta=args.tta,
                           verbose=0 if args.quiet else None)
    print(headline(metrics))
    return 0
