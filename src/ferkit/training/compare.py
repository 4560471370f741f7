"""`compare`: several recipes trained on the same data protocol, side by side.

What the original project did by hand across its three models: one table (accuracy, macro-F1,
per-class F1, parameters, training minutes, inference ms/face) as Markdown and CSV, and one
figure with every recipe's validation curves overlaid. `compare_runs` tabulates runs already
trained the same way.
"""

from __future__ import annotations

import csv
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from ferkit.errors import FerkitError
from ferkit.evaluation.plots import plot_overlay
from ferkit.models import check_model
from ferkit.models.loading import load_keras_model
from ferkit.runs import RunDir, checked_metrics, output_folder, test_faces_drawn
from ferkit.training import distill
from ferkit.recipes import load_recipe
from ferkit.account import tells_its_account
from ferkit.training.config import TrainConfig
from ferkit.training.networks import build_model, check_fallback, fallback_trained, keeps_precision_policy
from ferkit.training.trainer import train

log = logging.getLogger("ferkit")
# what every compared recipe must share: its faces to train, validate and test on
PROTOCOL = ("classes", "split", "fractions", "seed", "drop_repeats", "train_fraction")
MARKDOWN, CSV, CURVES = "compare.md", "compare.csv", "val_curves.png"  # what a comparison writes beside its runs


@tells_its_account
@keeps_precision_policy
def compare(data: str | Path, recipes: list[str] | str, output: str | Path | None = None,
            verbose: int | None = None, **overrides: Any) -> list[dict[str, Any]]:
    """Train each recipe on `data` and write compare.md, compare.csv and val_curves.png to `output`.

    The data protocol (classes, split, fractions, seed, repeats dropped or not, the share of the
    training faces trained on) is the first recipe's unless overridden, and is applied to all of
    them, so that every model is tested on the same faces.
    """
    if isinstance(recipes, str):  # "seed-custom,default", as --recipes takes them: not one per character
        recipes = names_in(recipes)
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
            rows.append(_row(config.recipe, result.run_dir))
            stage = "tabulating"  # now: a kill in a later recipe (OOM, kill -9) keeps these rows
            _write(out, rows, [c.to_dict() for c in configs], notes)
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


def compare_runs(runs: list[str | Path] | str, output: str | Path | None = None) -> list[dict[str, Any]]:
    """Tabulate runs already trained, as `compare` tabulates the runs it trains: one recipe on several
    seeds, runs trained on other days or by `ferkit train`. Only runs tested on the same faces: a table
    of scores on different faces would read as a comparison and not be one."""
    if isinstance(runs, str):
        runs = names_in(runs)
    if not runs:
        raise FerkitError("no runs to compare: give --runs RUN,RUN,...")
    if len({Path(run).resolve() for run in runs}) < len(runs):  # runs/a and runs/a/ too
        raise FerkitError(f"a run is given twice in {', '.join(map(str, runs))}: give each once")
    out = output_folder(output, "compare")
    found = [RunDir(Path(run)) for run in runs]
    configs = [_trained(run) for run in found]
    notes = _same_test_faces(found, configs)
    _check_output(out)
    out.mkdir(parents=True, exist_ok=True)
    names = [run.path.name for run in found]
    if len(set(names)) < len(names):  # runs/a/default and runs/b/default: named by the paths given
        names = list(map(str, runs))
    rows = [{"run": name, **_row(config.get("recipe") or "(none)", run.path)}
            for name, run, config in zip(names, found, configs)]
    if len({_recorded(run).get("val") for run in found} - {None}) > 1:  # each seed drew its own from Training
        notes.append("the runs validated on different faces (each seed drew its own from Training): their "
                     "validation curves are not on the same faces")
    _write(out, rows, configs, notes)
    return rows


def names_in(text: str) -> list[str]:
    """"a,b" as --recipes and --runs take them, not one per character."""
    return [name.strip() for name in text.split(",") if name.strip()]


def _trained(run: RunDir) -> dict[str, Any]:
    """The configuration of a trained run: an ensemble (a bundle) or a run that never finished has no
    training's row to give."""
    if not run.path.is_dir():
        raise FerkitError(f"{run.path} is not a run directory" if run.path.exists() else f"run not found: {run.path}")
    config = run.read_config()
    if "members" in config:
        raise FerkitError(f"{run.path} is an ensemble of runs: compare tabulates training runs, such as its members")
    if not (run.keras_model.is_file() and checked_metrics(_metrics(run))):
        raise FerkitError(f"{run.path} has no model.keras and test metrics: {run.why_no_model()}")
    return config


def _same_test_faces(runs: list[RunDir], configs: list[dict[str, Any]]) -> list[str]:
    """Refuses runs tested on different faces (their recorded test parts differ); says which runs
    cannot be checked (from before the record), whose test faces are then only counted alike."""
    digests = {run.path: _recorded(run).get("test") for run in runs}
    known = {digest for digest in digests.values() if digest}
    sizes = {run.path: _metrics(run).get("split_sizes", {}).get("test") for run in runs}
    classes = {tuple(config["classes"]) for config in configs}
    unchecked = [str(path) for path, digest in digests.items() if not digest]
    # without a record, a random split's test faces are told apart by what drew them
    drawn = {test_faces_drawn(config) for config in configs} if unchecked else set()
    if len(known) > 1 or len(set(sizes.values())) > 1 or len(classes) > 1 or len(drawn) > 1:
        said = ", ".join(f"{path} ({sizes[path] or 0:,} test faces of {len(config['classes'])} classes, "
                         f"{_split_words(config)})" for path, config in zip(sizes, configs))
        raise FerkitError(f"these runs were tested on different faces, so their scores do not compare: {said}; "
                          "train them on one split with `ferkit compare DATA --recipes ...`, or give the same data, "
                          "classes, split and (for a random split) seed to `ferkit train`")
    if not unchecked:
        return []
    note = (f"{', '.join(unchecked)}: from before runs recorded their test faces; as many test faces of the same "
            "classes, but not checked to be the same ones")
    log.warning(note)
    return [note]


def _recorded(run: RunDir) -> dict[str, str]:
    """The digests of a run's parts as it recorded them, {} for a run from before the record or whose
    record is damaged: that run is compared as unchecked, not the whole comparison refused."""
    try:
        return (run.recorded_split() or {}).get("parts", {})
    except FerkitError:
        return {}


def _split_words(config: dict[str, Any]) -> str:
    if config["split"] == "official":
        return "official split"
    return f"random split {'/'.join(f'{f:g}' for f in config['fractions'])}, seed {config['seed']}"


def _check_output(out: Path) -> None:
    tables = [name for name in (MARKDOWN, CSV, CURVES) if (out / name).exists()]
    if tables:  # an earlier comparison's table, which this one's would replace
        raise FerkitError(f"{out} already holds a comparison ({', '.join(tables)}): give compare another --output")
    RunDir(out).check_writable("a comparison")


def _metrics(run: RunDir) -> dict[str, Any]:
    try:
        return json.loads(run.metrics.read_text(encoding="utf-8"))
    except (OSError, ValueError):  # missing, cut short
        return {}


def _write(out: Path, rows: list[dict[str, Any]], configs: list[dict[str, Any]], notes: list[str]) -> None:
    """The curves first: a table written before a figure that failed would refuse the rerun."""
    histories = {row.get("run", row["recipe"]): RunDir(Path(row["run_dir"])).history for row in rows}
    missing = [name for name, history in histories.items() if not history.is_file()]  # a run copied without it
    plot_overlay({name: history for name, history in histories.items() if name not in missing}, out / CURVES)
    notes = [*notes, *(f"{name}: no history.csv, so no validation curves" for name in missing)]
    write_table(out, rows, configs, notes)
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
    _check_output(out)
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


def _row(name: str, run_path: Path) -> dict[str, Any]:
    """A trained run's row, from its files: its inference timed here, so that every row's is this machine's."""
    model, info = load_keras_model(run_path)
    faces = np.random.default_rng(0).uniform(0, 255, (256, info.image_size, info.image_size, 1)).astype(np.float32)
    model.predict(faces[:64], batch_size=64, verbose=0)  # warm-up
    passes = []
    for _ in range(3):  # the best of three: one pass of the same network varied by half on a busy machine
        start = time.perf_counter()
        model.predict(faces, batch_size=64, verbose=0)
        passes.append((time.perf_counter() - start) * 1000 / len(faces))
    ms_per_face = min(passes)
    run = RunDir(Path(run_path))
    m = _metrics(run)
    return {"recipe": name, "model": info.config["model"],
            "fallback": fallback_trained(info.config.get("description", "")),
            "interrupted": m["interrupted"], "params": model.count_params(),
            "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "unseen_accuracy": m["unseen"]["accuracy"] if "unseen" in m else None,
            "unseen_faces": m["unseen"]["faces"] if "unseen" in m else None,
            "train_faces": m.get("split_sizes", {}).get("train"),  # a --train-fraction's share, or all
            **{f"f1_{label}": v["f1"] if v["support"] else None  # no test faces: no F1, not 0
               for label, v in m["per_class"].items()},
            # data loading included; a resumed run's since its resume; none in runs from before the record
            "train_min": m.get("train_minutes"), "ms_per_face": ms_per_face,
            # of the model scored: a run resumed and killed has more rows in history.csv than its model's
            "epochs": m.get("epochs_trained") or run.history_rows() or 0,
            "kept_epoch": m.get("best_epoch"), "test_faces": sum(v["support"] for v in m["per_class"].values()),
            "run_dir": str(run.path)}


def write_table(out: Path, rows: list[dict[str, Any]], configs: list[dict[str, Any]], notes: list[str] = ()) -> None:
    """compare.md and compare.csv; `configs` the runs' configurations, whose shared protocol heads the table."""
    with open(out / CSV, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    f1_cols = [k for k in rows[0] if k.startswith("f1_")]
    # the per-class columns said to be F1 (they had read as accuracies), and the epoch kept beside those trained
    by_run = "run" in rows[0]  # runs already trained: named by their folders, their recipes beside
    header = ["run", "recipe"] if by_run else ["recipe"]
    header += ["model", "params", "epochs (kept)", "train faces", "accuracy", "unseen", "macro-F1",
               *[f"F1 {c[3:]}" for c in f1_cols], "train min", "ms/face (Keras, batch 64)"]
    first = configs[0]
    repeats = ("; faces drawn at random to hold out that repeat a training face left out"
               if all(c.get("drop_repeats") for c in configs) else "")  # none in runs of older versions
    shares = "" if first["split"] == "official" else f" {'/'.join(f'{f:g}' for f in first['fractions'])}"
    faces = f", {rows[0]['test_faces']:,} test faces" if rows[0].get("test_faces") else ""
    seeds = sorted({c["seed"] for c in configs})  # runs of one recipe on several seeds: all of them
    seeds_said = f"seed {seeds[0]}" if len(seeds) == 1 else f"seeds {', '.join(map(str, seeds))}"
    lines = [f"Test split: {first['split']}{shares}{faces}, classes {', '.join(first['classes'])}, {seeds_said}"
             f"{repeats}. unseen: the accuracy on the test faces that repeat none of the model's own training "
             "faces (–: none or all do; how many, in compare.csv). ms/face: timed here, the best of three passes "
             "(a busy machine reads slower).",
             "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        kept = f" ({r['kept_epoch']})" if r.get("kept_epoch") else ""
        name = r["run"] if by_run else r["recipe"]
        cells = [name + (" (interrupted)" if r["interrupted"] else ""), *([r["recipe"]] if by_run else []),
                 r["model"] + (" (fallback)" if r["fallback"] else ""), f"{r['params']:,}",
                 f"{r['epochs']}{kept}", "–" if r.get("train_faces") is None else f"{r['train_faces']:,}",
                 f"{r['accuracy']:.4f}", _cell(r["unseen_accuracy"], 4), f"{r['macro_f1']:.4f}",
                 *[_cell(r[c], 3) for c in f1_cols], _cell(r["train_min"], 1),
                 f"{r['ms_per_face']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    notes = [*notes, *(f"{r.get('run', r['recipe'])}: trained its lighter fallback network {r['fallback']}: its own "
                       "would not have fitted its time limit here" for r in rows if r["fallback"])]
    lines += ["", *notes] if notes else []
    (out / MARKDOWN).write_text("\n".join(lines) + "\n", encoding="utf-8")


def _cell(value: float | None, digits: int) -> str:
    return "–" if value is None else f"{value:.{digits}f}"
