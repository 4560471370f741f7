"""`ferkit info`: what a model is, what it was trained on, and how well it did."""

from __future__ import annotations

import argparse
import json
import textwrap

from ferkit.cli._common import nonempty


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="describe a model (default: the bundled one)")
    p.add_argument("--model", type=nonempty, default="default", help="default, a run directory, .keras or .onnx")
    p.add_argument("--json", action="store_true", help="print everything as JSON")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ferkit.cli._common import keras_imported_quietly
    from ferkit.inference.backends import describe_model
    from ferkit.runs import count_networks

    if not Path(args.model).is_dir():  # a run directory is described from its files, without Keras
        keras_imported_quietly(args.model)
    info = describe_model(args.model)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    config, metrics = info["config"], info["metrics"]
    print(f"model       {info['model']}")
    print(f"classes     {', '.join(info['classes'])}")
    print(f"input       {info['image_size']}x{info['image_size']} grayscale")
    if config.get("members"):
        count, networks = len(config["members"]), count_networks(config)
        inner = f" ({networks} networks: some are ensembles themselves)" if networks != count else ""
        print(f"trained     ensemble of {count} models{inner} on {config.get('data') or '?'}")
    elif config.get("recipe") or config.get("model"):  # an export of a bare .keras file knows neither
        done = info["epochs_trained"]
        cut = _how_it_ended(metrics)
        # A finished run short of `epochs` otherwise stopped where its time limit (or early stopping)
        # said: the default's "32 of 40" had read like a cut-short run. Metrics that do not say it
        # neither stopped nor diverged (older ones: `diverged` came after `interrupted`) claim nothing.
        stops = config.get("time_limit") or config.get("early_stopping")
        finished = not cut and metrics.get("interrupted") is False and "diverged" in metrics and not info["training"]
        of = "of at most" if stops and finished else "of"
        epochs = f"{done} {of} {config.get('epochs')}" if done is not None and done != config.get("epochs") else \
            config.get("epochs")
        epochs = epochs if done is not None or not info["training"] else f"to train {epochs}"
        best = metrics.get("best_epoch")
        kept = f", kept epoch {best} (best {config.get('checkpoint_on', 'val_loss')})" if isinstance(best, int) else ""
        minutes = metrics.get("train_minutes")
        took = f" in {minutes:.1f} min" if isinstance(minutes, (int, float)) else ""  # older runs did not record it
        print(f"trained     recipe {config.get('recipe') or '(none: a configuration built in Python)'}, architecture "
              f"{config.get('model')}, {epochs} epoch{'s' * (config.get('epochs') != 1)}{cut}{kept} on "
              f"{config.get('data') or '?'}{took}")
    if info["training"]:
        print(f"training    {_progress(info['training'], info['epochs_trained'], config, info['model'])}")
    if config.get("description"):  # wrapped: the bundled model's ran to 555 characters on one line
        print(textwrap.fill(str(config["description"]), width=100, initial_indent="recipe      ",
                            subsequent_indent=" " * 12, break_on_hyphens=False))
    if config.get("quantize") in ("int8", "int8 in part"):
        print(f"weights     {config['quantize']} (quantized for speed)")
    if metrics:
        # Training's metrics.json measured the float Keras model (`ferkit evaluate`'s name theirs,
        # as the bundled model's do): an int8 export of the run may score a little differently.
        trained = config.get("quantize") == "int8" and "model" not in metrics
        of = ", the float model before int8 quantization" if trained else ""
        f1 = f", macro-F1 {metrics['macro_f1']:.4f}" if "macro_f1" in metrics else ""
        print(f"test        accuracy {metrics['accuracy']:.4f}{f1} "
              f"({metrics.get('split', 'test split')}{of})")
        unseen = metrics.get("unseen")
        if isinstance(unseen, dict):  # the faces of the test part no training face repeats; older runs lack it
            print(f"  unseen    accuracy {unseen['accuracy']:.4f}, macro-F1 {unseen['macro_f1']:.4f} on the "
                  f"{unseen['faces']} faces that repeat no training face ({unseen['repeats']} do)")
        for name, m in metrics.get("per_class", {}).items():
            print(f"  {name:<9} f1 {m['f1']:.3f}  recall {m['recall']:.3f}  n={m['support']}" if m["support"]
                  else f"  {name:<9} no faces scored")
    return 0


def _how_it_ended(metrics: dict) -> str:
    """Both marks where both happened (Ctrl-C in the epoch whose loss became NaN): one had hidden the other."""
    marks = ["interrupted"] if metrics.get("interrupted") else []
    diverged = metrics.get("diverged")
    if isinstance(diverged, int) and not isinstance(diverged, bool) and diverged > 0:
        marks.append(f"diverged in epoch {diverged}")
    elif diverged:  # a hand-edited file: say it without inventing an epoch
        marks.append("diverged")
    return f" ({', '.join(marks)})" if marks else ""


def _progress(training: dict, trained: int | None, config: dict, run: str) -> str:
    """Where a run's training stands when its files say more than its model: no model yet, or a
    resume past it. Whether it is running now no file says, hence "unless"."""
    state = "no model yet" if trained is None else f"resumed after this model's epoch {trained}"
    done, epochs = training["epochs_so_far"], config.get("epochs")
    if done is None:
        return f"{state}; its history.csv is damaged, so how far it went is not known"
    step = (f"goes on from epoch {done + 1}" if not isinstance(epochs, int) or done < epochs
            else "only saves the model, all its epochs done")
    resume = (f"; `ferkit train --resume {run}` {step} unless it is training now") if training["resumable"] else ""
    best = (f", best {training['monitor']} {training['best']:.4f} at epoch {training['best_epoch']}"
            if training["best_epoch"] is not None else "")
    return f"{state}: {done} of {epochs} epochs so far{best}{resume}"
