"""`ferkit train`: a recipe plus flag overrides -> a run directory."""

from __future__ import annotations

import argparse

from ferkit.choices import CHECKPOINT_ON, CLASS_WEIGHTS, MIXED_PRECISION, SCHEDULES, SPLITS
from ferkit.cli._common import fractions, nonempty, on_off


def add_parser(sub) -> None:
    p = sub.add_parser("train", help="train a model on FER2013 (CSV, folder or zip)",
                       description="Train a model. Every flag overrides one field of the recipe.")
    p.add_argument("data", nargs="?", type=nonempty,
                   help="fer2013.csv, an image folder or a .zip (with --resume: only if the run's data has moved)")
    p.add_argument("--recipe", type=nonempty,
                   help="named recipe (see --list-recipes) or a .toml file; default: default")
    p.add_argument("--list-recipes", action="store_true", help="list the shipped recipes and exit")
    p.add_argument("--resume", type=nonempty, metavar="RUN_DIR", help="continue an interrupted run from its last epoch")
    p.add_argument("--output", type=nonempty, metavar="DIR", help="run directory (default runs/<recipe>-<timestamp>)")
    g = p.add_argument_group("recipe overrides")
    g.add_argument("--model", type=nonempty, help="architecture from the model registry")
    g.add_argument("--classes", help="comma-separated emotions, e.g. angry,fear,happy")
    g.add_argument("--split", choices=SPLITS)
    g.add_argument("--fractions", type=fractions, help="train,val,test fractions, e.g. 0.8,0.1,0.1")
    g.add_argument("--drop-repeats", type=on_off, metavar="on|off",
                   help="leave out of the faces carved out to validate (and test, with --split random) those "
                        "that repeat a training face pixel for pixel (the shipped recipes: on)")
    g.add_argument("--train-fraction", type=float, metavar="SHARE",
                   help="train on this share of the training faces, each class in proportion (e.g. 0.1 for a "
                        "quick trial), tested on the same faces as a full run")
    g.add_argument("--epochs", type=int,
                   help="the most epochs to train (the default recipe trains as many of its 40 as fit its "
                        "57-minute time limit, and a lighter network where fewer than 14 would (60%% of "
                        "--epochs where that is fewer): add "
                        "--time-limit 0 to train exactly --epochs of its own network)")
    g.add_argument("--batch-size", type=int)
    g.add_argument("--learning-rate", type=float)
    g.add_argument("--image-size", type=int)
    g.add_argument("--weights", type=nonempty,
                   help="imagenet (transfer models), none, or a local file: a run's model.keras or "
                        "model.weights.h5 of the same network, or Keras' own backbone weights")
    g.add_argument("--seed", type=int)
    g.add_argument("--early-stopping", type=int, metavar="PATIENCE", help="epochs without improvement")
    g.add_argument("--time-limit", type=float, metavar="MIN",
                   help="end within MIN minutes, data loading included: fewer epochs than --epochs if "
                        "those do not fit, with the cosine schedule ending in the last that does, and the "
                        "recipe's lighter fallback network if fewer than its fallback_below would, or "
                        "60%% of them where that is fewer or it names none (0 = none)")
    g.add_argument("--checkpoint-on", choices=CHECKPOINT_ON,
                   help="keep the epoch with the lowest val_loss or the highest val_accuracy")
    g.add_argument("--augment", type=on_off, metavar="on|off")
    g.add_argument("--erasing", type=float, metavar="STRENGTH", help="random erasing (0 = off)")
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--class-weight", choices=CLASS_WEIGHTS)
    g.add_argument("--schedule", choices=SCHEDULES)
    g.add_argument("--warmup-epochs", type=int)
    g.add_argument("--weight-decay", type=float, help="> 0 uses AdamW")
    g.add_argument("--mixed-precision", choices=MIXED_PRECISION,
                   help="bfloat16 training compute (auto: where the GPU or CPU has it natively and "
                        "faster)")
    g.add_argument("--teacher", type=nonempty, metavar="MODEL",
                   help="distil from MODEL (default = the bundled model, a run directory or .onnx file; "
                        "none = train on the labels alone)")
    g.add_argument("--teacher-weight", type=float, metavar="W",
                   help="the teacher's share of each training target (default 0.5; above it, the training "
                        "accuracy logged counts the mixed target's top class, not the label; validation's is "
                        "the label's)")
    g.add_argument("--teacher-flip", type=on_off, metavar="on|off",
                   help="average the teacher's probabilities over each face and its mirror image (2x its time)")
    g.add_argument("--mirror-average", type=on_off, metavar="on|off",
                   help="the saved model averages each face with its mirror image (2x inference time)")
    g.add_argument("--precise-bn", type=on_off, metavar="on|off",
                   help="recompute BatchNorm statistics on un-augmented training faces after training")
    p.set_defaults(run=run)


OVERRIDES = ("model", "classes", "split", "fractions", "drop_repeats", "train_fraction", "epochs", "batch_size",
             "learning_rate", "image_size", "weights", "seed", "early_stopping", "time_limit", "checkpoint_on",
             "augment", "erasing", "label_smoothing", "class_weight", "schedule", "warmup_epochs", "weight_decay",
             "mixed_precision", "teacher", "teacher_weight", "teacher_flip", "mirror_average", "precise_bn")


def run(args: argparse.Namespace) -> int:
    from ferkit.errors import FerkitError
    from ferkit.recipes import list_recipes, load_recipe

    if args.list_recipes:
        for name in list_recipes():
            print(f"{name:<18} {load_recipe(name).get('description', '')}")
        return 0
    if not args.resume and not args.data:
        raise FerkitError("give the training data (fer2013.csv, a folder or a .zip), or --resume RUN_DIR")
    from ferkit.cli._common import native_stderr_hidden

    with native_stderr_hidden():
        from ferkit.evaluation.metrics import headline
        from ferkit.training import train

    # With --resume any other flag is an error, said by train() itself (the Python API's rule too).
    overrides = {k: getattr(args, k) for k in OVERRIDES}
    # -q: Keras' epoch lines too, which are no warnings or errors
    result = train(args.data, recipe=args.recipe, output=args.output, resume=args.resume,
                   verbose=0 if args.quiet else None, **overrides)
    print(f"{headline(result.metrics)}  run directory {result.run_dir}")
    # The shell's code for Ctrl-C (the log said how to resume): `ferkit train ... && ferkit export ...`
    # must not go on with a cut-short model.
    return 130 if result.interrupted or result.stop_asked else 0

