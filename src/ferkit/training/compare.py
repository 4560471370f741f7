"""`compare`: several recipes trained on the same data protocol, side by side.

What the original project did by hand across its three models: one table (accuracy, macro-F1,
per-class F1, parameters, training minutes, inference ms/face) as Markdown and CSV, and one
figure with every recipe's validation curves overlaid.
"""

from __future__ import annotations

import csv
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.errors import FerkitError
from ferkit.evaluation.plots import plot_overlay
from ferkit.models import check_model
from ferkit.models.loading import load_keras_model
from ferkit.runs import RunDir, output_folder
from ferkit.training import distill
from ferkit.recipes import load_recipe
from ferkit.training.account import tells_its_account
from ferkit.training.config import TrainConfig
from ferkit.training.networks import build_model, check_fallback, describe_fallback, keeps_precision_policy
from ferkit.training.trainer import train

log = logging.getLogger("ferkit")
PROTOCOL = ("classes", "split", "fractions", "seed", "drop_repeats")  # what every compared recipe must share
MARKDOWN, CSV, CURVES = "compare.md", "compare.csv", "val_curves.png"  # what a comparison writes beside its runs


@tells_its_account
@keeps_precision_policy
def compare(data: str | Path, recipes: list[str] | str, output: str | Path | None = None,
            verbose: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train each recipe on `data` and write compare.md, compare.csv and val_curves.png to `output`.

    The data protocol (classes, split, fractions, seed, repeats dropped or not) is the first recipe's
    unless overridden, and is applied to all of them, so that every model is tested on the same faces.
    """
    if isinstance(recipes, str):  # "seed-custom,default", as --recipes takes them: not one per character
        recipes = [recipe.strip() for recipe in recipes.split(",") if recipe.strip()]
    out = output_folder(output, "compare")
    if not Path(data).exists():  # before its output folder is made, which would stay behind empty
        raise FerkitError(f"data not found: {data}")
    configs, notes = _check(recipes, overrides, out)
    made = [p for p in (out, *out.parents) if not p.exists()]  # the deepest first
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for config in configs:
            log.info("=== %s ===", config.recipe)
            stage = "training"
            result = train(data, config, output=out / config.recipe, verbose=verbose)
            stage = "measuring"  # its row: the model loaded, its inference timed
            rows.append(_row(config, result))
            stage = "tabulating"  # now: a kill in a later recipe (OOM, kill -9) keeps these rows
            _write(out, rows, configs[0], notes)
            if result.interrupted or result.stop_asked:  # Ctrl-C means the comparison, not one recipe
                skipped = [c.recipe for c in configs[len(rows):]]
                log.warning("interrupted: %s is tabulated as trained %s%s", config.recipe,
                            "so far" if result.interrupted else "to the end",
                            f"; not trained: {', '.join(skipped)}" if skipped else "")
                break
    except BaseException as exc:  # Ctrl-C outside an epoch (loading, a teacher's pass), or a recipe that
        # failed: the recipes that finished have their table already
        run = RunDir(out / config.recipe)
        what = ("the table could not be written after %(recipe)s" if stage == "tabulating" else
                "%(recipe)s failed" if not isinstance(exc, KeyboardInterrupt) else
                "interrupted while %(recipe)s's row was measured (its run is in %(run)s)" if stage == "measuring"
                # after its epochs (its model being saved, its test faces scored): not "before an epoch"
                else "interrupted after %(recipe)s trained, before its run was finished (`ferkit train --resume "
                     "%(run)s` finishes it)" if run.history_rows()
                else "interrupted before %(recipe)s trained an epoch")
        # the names as arguments, not in the format: a '%' in a folder's name had lost the message to a traceback
        log.warning(what + ("" if stage == "tabulating" else ": the table holds the recipes before it"),
                    {"recipe": config.recipe, "run": run.path})
        for folder in made:  # the first recipe failed before its run began: no empty folder left behind
            try:
                folder.rmdir()  # only if empty
            except OSError:
                break
        raise
    return rows


def _write(out: Path, rows: list[dict[str, Any]], first: TrainConfig, notes: list[str]) -> None:
    write_table(out, rows, first, notes)
    plot_overlay({row["recipe"]: RunDir(out / row["recipe"]).history for row in rows}, out / CURVES)
    log.info("comparison written to %s", out)


def _check(recipes: list[str], overrides: dict[str, Any], out: Path) -> tuple[list[TrainConfig], list[str]]:
    """Each recipe's configuration on the shared protocol, and notes for the table, all found before
    the first recipe trains: a typo in the last of four recipes (or a run already in its folder)
    must not cost the hours of the first three."""
    if not recipes:
        raise FerkitError("no recipes to compare: give --recipes NAME,NAME,...")
    first = _config(recipes[0], overrides)
    shared = {key: getattr(first, key) for key in PROTOCOL}  # parsed: classes as names, not the flag's string
    configs = [_config(recipe, {**overrides, **shared}) for recipe in recipes]
    for config in configs:  # once each, with the fields the user gave
        config.warn_unread(overrides)
    names = [config.recipe for config in configs]  # a .toml path's stem
    _check_names(recipes, names, out)
    taken = [str(out / name) for name in names if RunDir(out / name).holds_run()]
    if taken:
        raise FerkitError(f"{', '.join(taken)} already {'holds a run' if len(taken) == 1 else 'hold runs'}: "
                          "give compare another --output")
    for name in names:  # a file there, or a user's files a run would replace: now, not after the first recipes
        RunDir(out / name).check_free()
    tables = [name for name in (MARKDOWN, CSV, CURVES) if (out / name).exists()]
    if tables:  # an earlier comparison's table, which this one's would replace with its recipes alone
        raise FerkitError(f"{out} already holds a comparison ({', '.join(tables)}): give compare another --output")
    for config in configs:
        check_model(config.model, config.weights, **config.model_options)
        # built, so that bad option values fail too, with its weights: a download that cannot be made
        # (offline, for ImageNet) must fail here, not after the recipes before it have trained
        build_model(config, config.weights, mixed_precision=False)
        check_fallback(config, mixed_precision=False)
        distill.check_teacher(config, None)
    notes = [f"{config.recipe}: {distill.TEACHER_SAW_TEST}" for config in configs if distill.teacher_saw_test(config)]
    for note in notes:
        log.warning(note)
    return configs, notes


def _check_names(recipes: list[str], names: list[str], out: Path) -> None:
    """Each recipe's run is out/<its name>, a .toml file's stem: two files of one name in different
    folders are two recipes that cannot both be written, not one given twice."""
    for name in dict.fromkeys(names):
        given = [recipe for recipe, named in zip(recipes, names) if named == name]
        if len(set(given)) > 1:
            raise FerkitError(f"recipes {' and '.join(dict.fromkeys(given))} have the same name, {name}: their "
                              f"runs would share {out / name}; rename all but one")
        if len(given) > 1:
            raise FerkitError(f"recipe {given[0]} is given {len(given)} times: give each once")


def _config(recipe: str, overrides: dict[str, Any]) -> TrainConfig:
    """`weights` is for the recipes that start from pretrained ones (the transfer models): the others
    have none to swap, and would refuse "imagenet"."""
    if load_recipe(recipe).get("weights", "none") == "none":
        overrides = {key: value for key, value in overrides.items() if key != "weights"}
    return TrainConfig.from_recipe(recipe, **overrides)


def _row(config: TrainConfig, result) -> dict[str, Any]:
    model, info = load_keras_model(result.run_dir)
    faces = np.random.default_rng(0).uniform(0, 255, (256, info.image_size, info.image_size, 1)).astype(np.float32)
    model.predict(faces[:64], batch_size=64, verbose=0)  # warm-up
    start = time.perf_counter()
    model.predict(faces, batch_size=64, verbose=0)
    m = result.metrics
    return {"recipe": config.recipe, "model": info.config["model"],
            "fallback": describe_fallback(config, info.config.get("model_options", {}), info.image_size),
            "interrupted": result.interrupted,
            "params": model.count_params(),
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "unseen_accuracy": m["unseen"]["accuracy"] if "unseen" in m else None,
            **{f"f1_{name}": v["f1"] if v["support"] else None  # no test faces: no F1, not 0
               for name, v in m["per_class"].items()},
            "train_min": result.minutes, "ms_per_face": (time.perf_counter() - start) * 1000 / len(faces),
            "epochs": RunDir(result.run_dir).history_rows() or 0,  # as trained
            "kept_epoch": m.get("best_epoch"), "test_faces": sum(v["support"] for v in m["per_class"].values())}


def write_table(out: Path, rows: list[dict[str, Any]], protocol: TrainConfig, notes: list[str] = ()) -> None:
    with open(out / CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    f1_cols = [k for k in rows[0] if k.startswith("f1_")]
    # the per-class columns said to be F1 (they had read as accuracies), and the epoch kept beside those trained
    header = ["recipe", "model", "params", "epochs (kept)", "accuracy", "unseen", "macro-F1",
              *[f"F1 {c[3:]}" for c in f1_cols], "train min", "ms/face (Keras, batch 64)"]
    repeats = ("; faces drawn at random to hold out that repeat a training face left out" if protocol.drop_repeats
               else "")
    shares = "" if protocol.split == "official" else f" {'/'.join(f'{f:g}' for f in protocol.fractions)}"
    faces = f", {rows[0]['test_faces']:,} test faces" if rows[0].get("test_faces") else ""
    lines = [f"Test split: {protocol.split}{shares}{faces}, classes {', '.join(protocol.classes)}, seed {protocol.seed}"
             f"{repeats}. unseen: the accuracy on the test faces that repeat no training face (–: none or all do).",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        kept = f" ({r['kept_epoch']})" if r.get("kept_epoch") else ""
        cells = [r["recipe"] + (" (interrupted)" if r["interrupted"] else ""),
                 r["model"] + (" (fallback)" if r["fallback"] else ""), f"{r['params']:,}",
                 f"{r['epochs']}{kept}", f"{r['accuracy']:.4f}", _cell(r["unseen_accuracy"], 4), f"{r['macro_f1']:.4f}",
                 *[_cell(r[c], 3) for c in f1_cols], f"{r['train_min']:.1f}",
                 f"{r['ms_per_face']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [*notes, *(f"{r['recipe']}: trained its lighter fallback network {r['fallback']}: its own would not "
                       "have fitted its time limit here" for r in rows if r["fallback"])]
    lines += ["", *notes] if notes else []
    (out / MARKDOWN).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
