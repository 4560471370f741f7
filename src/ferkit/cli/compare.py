"""`ferkit compare`: train several recipes on the same split and tabulate them."""

from __future__ import annotations

import argparse

from ferkit.choices import SPLITS
from ferkit.cli._common import fractions, nonempty, on_off
from ferkit.errors import FerkitError

RECIPES = "seed-custom,seed-mobilenetv2,seed-vgg19,default"  # the original project's three, and ferkit's own


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="train several recipes on the same split, side by side",
                       description="Writes compare.md, compare.csv and val_curves.png: of recipes it trains on "
                                   "DATA, or of runs already trained (--runs).")
    p.add_argument("data", type=nonempty, nargs="?", help="fer2013.csv, an image folder or a .zip")
    p.add_argument("--runs", type=nonempty, metavar="RUN,RUN",
                   help="tabulate these trained runs instead (tested on the same faces), training nothing")
    p.add_argument("--recipes",
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
    p.add_argument("--train-fraction", type=float, metavar="SHARE",
                   help="override the shared share of the training faces trained on (e.g. 0.1 for a quick trial)")
    p.add_argument("--weights", type=nonempty,
                   help="imagenet, none or a path, for the recipes that start from pretrained "
                        "weights (the transfer models)")
    p.add_argument("--output", type=nonempty, metavar="DIR", help="default runs/compare-<timestamp>")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ferkit.cli._common import native_stderr_hidden

    with native_stderr_hidden():
        from ferkit.training.compare import compare, compare_runs, names_in

    overrides = {"epochs": args.epochs, "batch_size": args.batch_size, "time_limit": args.time_limit,
                 "classes": args.classes, "split": args.split, "fractions": args.fractions, "seed": args.seed,
                 "drop_repeats": args.drop_repeats, "train_fraction": args.train_fraction, "weights": args.weights}
    given = {k: v for k, v in overrides.items() if v is not None}
    if args.runs is not None:
        if args.data is not None or given or args.recipes is not None:
            raise FerkitError("--runs tabulates runs already trained: give it without DATA, --recipes or training "
                              "flags (the runs keep theirs)")
        rows = compare_runs(args.runs, args.output)
        _print(rows)
        return 0
    if args.data is None:
        raise FerkitError("give DATA to train the recipes on, or --runs RUN,RUN to tabulate runs already trained")
    recipes = names_in(RECIPES if args.recipes is None else args.recipes)  # "" (an unset variable) is refused
    rows = compare(args.data, recipes, args.output, verbose=0 if args.quiet else None, **given)
    _print(rows)
    # The shell's code for Ctrl-C, as for any other command: a recipe cut short, or recipes left untrained
    # (Ctrl-C while a trained one was saved)
    return 130 if rows[-1]["interrupted"] or len(rows) < len(recipes) else 0


def _print(rows: list[dict]) -> None:
    for row in rows:
        minutes = "" if row["train_min"] is None else f"  {row['train_min']:.1f} min"
        name = row.get("run", row["recipe"])  # a run's folder (--runs), or a recipe compare trained
        print(f"{name:<20} accuracy {row['accuracy']:.4f}  macro-F1 {row['macro_f1']:.4f}{minutes}"
              + ("  (interrupted)" if row["interrupted"] else ""))
