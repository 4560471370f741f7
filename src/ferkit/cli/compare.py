"""`ferkit compare`: train several recipes on the same split and tabulate them."""

from __future__ import annotations

import argparse

from ferkit.choices import SPLITS
from ferkit.cli._common import fractions, nonempty, on_off


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train several recipes on the same split, side by side",
                       description="Writes compare.md, compare.csv and val_curves.png.")
    p.add_argument("data", type=nonempty, help="fer2013.csv, an image folder or a .zip")
    p.add_argument("--recipes", default="seed-custom,seed-mobilenetv2,seed-vgg19,default",
                   help="comma-separated recipe names (default: the three seeds and default)")
    p.add_argument("--epochs", type=int, help="override every recipe's epochs")
    p.add_argument("--batch-size", type=int, help="override every recipe's batch size")
    p.add_argument("--time-limit", type=float, metavar="MIN",
                   help="override every recipe's time limit, in minutes (0: none)")
    p.add_argument("--classes", help="override the shared classes (default: the first recipe's)")
    p.add_argument("--split", choices=SPLITS, help="override the shared split")
    p.add_argument("--fractions", type=fractions, help="override the shared train,val,test fractions, e.g. 0.8,0.1,0.1")
    p.add_argument("--seed", type=int, help="override the shared seed (the split drawn, and each run's start)")
    p.add_argument("--drop-repeats", type=on_off, metavar="on|off",
                   help="override the shared drop_repeats (held-out faces drawn at random that repeat a training "
                        "face left out; on in the shipped recipes)")
    p.add_argument("--weights", type=nonempty,
                   help="imagenet, none or a path, for the recipes that start from pretrained "
                        "weights (the transfer models)")
    p.add_argument("--output", type=nonempty, metavar="DIR", help="default runs/compare-<timestamp>")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.cli._common import native_stderr_hidden

    with native_stderr_hidden():
        from ferkit.training.compare import compare

    recipes = [r.strip() for r in args.recipes.split(",") if r.strip()]
    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "time_limit": args.time_limit,
                 "classes": args.classes, "split": args.split, "fractions": args.fractions, "seed": args.seed,
                 "drop_repeats": args.drop_repeats, "weights": args.weights}
    rows = compare(args.data, recipes, args.output, verbose=0 if args.quiet else None,
                   **{k: v for k, v in overrides.items() if v is not None})
    for row in rows:
        print(f"{row['recipe']:<20} accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}  "
              f"{row['train_min']:.1f} min" + ("  (interrupted)" if row["interrupted"] else ""))
    # The shell's code for Ctrl-C, as for any other command: a recipe cut short, or recipes left untrained
    # (Ctrl-C while a trained one was saved)
    return 130 if rows[-1]["interrupted"] or len(rows) < len(recipes) else 0
