"""Replace the bundled default model with finished runs or exported models, in one command.

    python scripts/bundle_model.py MEMBER [MEMBER ...] [--weights W ...] [--mirror-average] [--data DATA]

A MEMBER is a run directory or an exported .onnx file (the bundled model itself, for instance).
Run directories alone: one is exported to int8-quantized ONNX (classes and input size as
metadata); several are averaged first (ferkit.models.ensemble), into runs/ensemble-<timestamp>/.
With .onnx files among them, each run directory is exported to int8 ONNX on its own and all are
averaged as graphs, `--weights` fixing each one's share (ferkit.models.onnx_graph);
`--mirror-average` then makes the result average each face with its mirror image. The model is
evaluated on its test split, and model.onnx, config.json, that metrics.json and its confusion
matrix go into src/ferkit/assets/default/, where `EmotionRecognizer()`, `ferkit predict` and
`ferkit info` find them, with the model's answers for every Training face of the data
(`teacher-targets.npz`, ferkit.training.teacher_table), which spare the default recipe its
teacher's pass on FER2013. `--data` names the data to test on when the members' own (their
config's `data`) is not at hand or lacks the test part. `--table-only --data DATA` writes that
table alone, for the bundled model as it is.

The current bundled model, three long GPU runs chosen on their validation split
(benchmarks/long/README.md), each face averaged with its mirror image, and a CPU student, was made by:

    scripts/gpu_train.sh benchmarks/gpu/call{2,3,4}.jobs ...   (on a GPU, Keras on JAX)
    python scripts/select_ensemble.py .devdata/fer-train.zip RUN ... --max 5
    python scripts/bundle_model.py acc-deep-wd long-fernet-b128 long-fernet-e150 \
        --data ../shared/data/fer2013.zip
    python scripts/bundle_model.py src/ferkit/assets/default/model.onnx --mirror-average \
        --data ../shared/data/fer2013.zip
    # session 44: that file (3/4) and a 96-epoch CPU student (1/4), benchmarks/long/default-no-fallback.toml
    python scripts/bundle_model.py OLD_BUNDLE.onnx STUDENT/model-int8.onnx --weights 3 1 \
        --data ../shared/data/fer2013.zip
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path

from ferkit.data.preprocess import to_model_input
from ferkit.data.sources import load_fer
from ferkit.evaluation import evaluate
from ferkit.inference.backends import load_backend
from ferkit.models import onnx_graph
from ferkit.models.ensemble import ensemble_run
from ferkit.models.export import export_onnx
from ferkit.runs import RunDir, default_path, write_json
from ferkit.training import teacher_table

TARGET = Path(__file__).resolve().parents[1] / "src" / "ferkit" / "assets" / "default"


def is_onnx(member: str) -> bool:
    return Path(member).suffix.lower() == ".onnx"


def from_runs(run_dirs: list[str], stage: Path, data: str | None) -> Path:
    """One int8 ONNX file in `stage` from run directories (their Keras ensemble when several)."""
    run = ensemble_run(run_dirs, default_path("ensemble")) if len(run_dirs) > 1 else RunDir(Path(run_dirs[0]))
    onnx = export_onnx(run.path, RunDir(stage).onnx_model, quantize="int8", calibration=data)
    # the export's own settings, which say int8 ("quantize"), not the run's config.json
    write_json(RunDir(stage).config, onnx_graph.read_config(onnx_graph.load(onnx)))
    return onnx


def from_graphs(members: list[str], weights: list[float] | None, mirror: bool, stage: Path,
                data: str | None) -> Path:
    """One ONNX file in `stage` averaging `members` (.onnx files or run directories) as graphs."""
    files = [m if is_onnx(m) else export_onnx(m, stage / f"member{i}.onnx", quantize="int8", calibration=data)
             for i, m in enumerate(members)]
    models = [onnx_graph.load(f) for f in files]
    # one member too: an older int8 export's scores made float again, as averaging does
    model = onnx_graph.averaged(models, weights) if len(models) > 1 else onnx_graph.float_scores(models[0])
    if mirror:
        model = onnx_graph.mirror_averaged(model)
    write_json(RunDir(stage).config, onnx_graph.read_config(model))
    return onnx_graph.save(model, RunDir(stage).onnx_model)


def shareable(values: dict) -> dict:
    """Names, not this machine's paths: the bundle ships to every user, and `ferkit info` prints them.
    A teacher or weights file is a path too (training records them absolute); imagenet, none and
    default are names already and stay as they are."""
    named = {key: Path(value).name if key in ("data", "run", "teacher", "weights") and isinstance(value, str)
             and value else value for key, value in values.items()}
    return {**named, **({"members": [shareable(m) for m in values["members"]]} if "members" in values else {})}


def publish(stage: RunDir) -> None:
    """The staged model's configuration, in config.json and in its ONNX metadata, and its
    metrics, with `shareable` names."""
    config = shareable(stage.read_config())
    write_json(stage.config, config)
    onnx_graph.save(onnx_graph.with_config(onnx_graph.load(stage.onnx_model), config), stage.onnx_model)
    write_json(stage.metrics, shareable(json.loads(stage.metrics.read_text(encoding="utf-8"))))


def write_table(model_file: Path, data: str) -> Path:
    """The model's answers for the Training faces of `data`, beside it: what the default recipe's
    teacher would compute for them at the start of every run on FER2013."""
    dataset = load_fer(data)
    faces = dataset.images[dataset.usage == "train"]
    if not len(faces):
        raise SystemExit(f"{data} has no Training faces to write the teacher's table for")
    backend = load_backend(model_file)
    path = teacher_table.write(model_file, faces, backend.predict(to_model_input(faces, backend.info.image_size)))
    print(f"{path.name}: {len(faces)} Training faces, {path.stat().st_size / 1e6:.2f} MB")
    return path


def main(members: list[str], weights: list[float] | None, mirror: bool, data: str | None) -> None:
    if weights and len(weights) != len(members):  # said before minutes of exporting
        raise SystemExit(f"--weights: one per member ({len(members)}), got {len(weights)}")
    for member in members:  # one line each, not a traceback from deep inside the export
        if not is_onnx(member) and not RunDir(Path(member)).config.is_file():
            raise SystemExit(f"{member}: give a run directory (with config.json) or an .onnx file")
        if is_onnx(member) and not Path(member).is_file():
            raise SystemExit(f"{member}: no such file")
    with tempfile.TemporaryDirectory() as tmp:
        # Everything is made and evaluated aside and copied in at the end: a failure on the way
        # leaves the bundled model as it was, even when it is one of the members.
        stage, test = RunDir(Path(tmp)), RunDir(Path(tmp) / "test")
        if weights or mirror or any(is_onnx(m) for m in members):
            onnx = from_graphs(members, weights, mirror, stage.path, data)
        else:
            onnx = from_runs(members, stage.path, data)
        data = data or stage.read_config()["data"]  # now: publish() leaves config.json only the data's name
        metrics = evaluate(onnx, data, split="test", output=test.path)
        write_json(stage.metrics, {**json.loads(test.metrics.read_text(encoding="utf-8")), "model": "default"})
        shutil.copy2(test.confusion_plot, stage.confusion_plot)
        publish(stage)
        table = write_table(stage.onnx_model, data)
        TARGET.mkdir(parents=True, exist_ok=True)
        for path in (stage.onnx_model, stage.config, stage.metrics, stage.confusion_plot, table):
            shutil.copy2(path, TARGET / path.name)
    print(f"bundled {', '.join(members)} -> {TARGET}: {(TARGET / 'model.onnx').stat().st_size / 1e6:.1f} MB model, "
          f"test accuracy {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("members", nargs="*", metavar="MEMBER", help="a run directory or an .onnx file")
    parser.add_argument("--weights", nargs="+", type=float, help="each member's share (default: equal)")
    parser.add_argument("--mirror-average", action="store_true",
                        help="average each face's probabilities with its mirror image's")
    parser.add_argument("--data", help="the data to test on and calibrate int8 with (default: the members' own)")
    parser.add_argument("--table-only", action="store_true",
                        help="only write the bundled model's teacher table, from --data's Training faces")
    args = parser.parse_args()
    if args.table_only:
        if not args.data or args.members:
            parser.error("--table-only takes --data and no member")
        write_table(TARGET / "model.onnx", args.data)
        raise SystemExit
    if not args.members:
        parser.error("give at least one MEMBER")
    main(args.members, args.weights, args.mirror_average, args.data)
