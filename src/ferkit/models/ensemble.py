"""Several trained runs as one model that averages their class probabilities.

Independently trained networks make partly different mistakes, so their averaged probabilities
are more accurate than either alone; on FER2013 that is the cheapest accuracy there is once the
runs exist. The ensemble is saved as an ordinary run directory, so export, evaluation and
inference treat it like any other model.
"""

from __future__ import annotations

import logging
from pathlib import Path

import keras
import numpy as np

from ferkit.errors import FerkitError
from ferkit.models.loading import load_keras_model
from ferkit.runs import SPLIT_PROTOCOL, RunDir, member_summary, replacing, test_faces_drawn, write_json

log = logging.getLogger("ferkit")


def ensemble_run(members: list[str | Path], output: str | Path) -> RunDir:
    """Write a run directory at `output` whose model averages the models of the `members` runs.

    Its config.json keeps the first member's data protocol, so that `ferkit evaluate` rebuilds the
    same splits, and lists each member's run, recipe, architecture and epochs under `members`.
    """
    if len(members) < 2:
        raise FerkitError("an ensemble needs at least two runs")
    loaded = [load_keras_model(member) for member in members]
    first = loaded[0][1]
    for member, (_, info) in zip(members, loaded):
        if (info.classes, info.image_size) != (first.classes, first.image_size):
            raise FerkitError(f"{member} has other classes or input size than {members[0]}: cannot average")
        if test_faces_drawn(info.config) != test_faces_drawn(first.config):
            log.warning("%s was tested on other faces than %s (another split): the ensemble is evaluated on the "
                        "first's, which %s may have trained on", member, members[0], member)
    run = RunDir.create(output, "ensemble")
    inputs = keras.Input(loaded[0][0].input_shape[1:], name="face")
    # Each member is re-wrapped under its own name: nested models must be uniquely named.
    outputs = [keras.Model(m.inputs, m.outputs[0], name=f"member_{i}")(inputs) for i, (m, _) in enumerate(loaded)]
    model = keras.Model(inputs, keras.layers.Average(name="emotion")(outputs), name="ensemble")
    parts = [{"run": str(Path(m)), **member_summary(info.config, ("recipe", "model", "epochs", "mirror_average"))}
             for m, (_, info) in zip(members, loaded)]
    description = " + ".join(f"{p['recipe'] or Path(p['run']).name} ({p['model'] or '?'}, {p['epochs'] or '?'} "
                             "epochs)" for p in parts)  # a bare .keras file's run says none of these
    # classes and input size as the models have them: a bare .keras file has no config.json to copy them from
    kept = {**{k: first.config[k] for k in SPLIT_PROTOCOL if k in first.config}, "classes": list(first.classes),
            "image_size": first.image_size}
    # Each member scores a face and its mirror image itself, so the ensemble does: TTA and a teacher's
    # flip must not do it again (as onnx_graph's ensembles say too).
    mirrored = all(info.mirror_averaged for _, info in loaded)
    write_json(run.config, {"recipe": "ensemble", "model": "ensemble", **kept,
                            "description": f"probabilities averaged over {len(parts)} runs: {description}",
                            "mirror_average": mirrored, "members": parts})
    # Last, and whole or not at all: a run with its model is a finished one (a Ctrl-C before leaves a
    # folder that says it holds nothing, not a cut model.keras read with guessed classes)
    with replacing(run.keras_model) as part:
        model.save(part)
    return run


def select_members(probs: dict[str, np.ndarray], labels: np.ndarray, max_members: int) -> list[tuple[str, float]]:
    """Greedy forward selection (Caruana et al. 2004) on held-out probabilities.

    Starts from the most accurate model and keeps adding the one whose averaged probabilities raise
    accuracy most, until none does or `max_members` are in: each member costs size and inference
    time, so a member that adds nothing on validation stays out. Returns (name, accuracy) per step.
    """
    def accuracy(names: list[str]) -> float:
        return float((np.mean([probs[n] for n in names], axis=0).argmax(1) == labels).mean())

    steps: list[tuple[str, float]] = []
    while len(steps) < max_members:
        chosen = [name for name, _ in steps]
        scores = {n: accuracy(chosen + [n]) for n in probs if n not in chosen}
        if not scores:
            break
        name, score = max(scores.items(), key=lambda item: item[1])
        if steps and score <= steps[-1][1]:
            break
        steps.append((name, score))
    return steps
