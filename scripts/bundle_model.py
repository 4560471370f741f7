"""Replace the bundled default model with a finished run directory, in one command.

    python scripts/bundle_model.py RUN_DIR [RUN_DIR ...] [--data DATA]

With several runs, their ensemble (probabilities averaged; ferkit.models.ensemble) is written to
runs/ensemble-<timestamp>/ and bundled. Exports the run to int8-quantized ONNX (classes and
input size as metadata), evaluates that file on the run's own test split, and puts model.onnx,
config.json, that metrics.json and its confusion matrix into src/ferkit/assets/default/, where
`EmotionRecognizer()`, `ferkit predict` and `ferkit info` find them. `--data` names the data to
test on when the runs' own (their config.json's `data`) is not at hand or lacks the test part.

The current bundled model, an ensemble of three long GPU runs chosen on their validation split
(benchmarks/long/README.md), was made by:

    scripts/gpu_train.sh benchmarks/gpu/call{2,3,4}.jobs ...   (on a GPU, Keras on JAX)
    python scripts/select_ensemble.py .devdata/fer-train.zip RUN ... --max 5
    python scripts/bundle_model.py acc-deep-wd long-fernet-b128 long-fernet-e150 \
        --data ../shared/data/fer2013.zip
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ferkit.evaluation import evaluate
from ferkit.models.ensemble import ensemble_run
from ferkit.models.export import export_onnx
from ferkit.runs import RunDir, default_path

TARGET = Path(__file__).resolve().parents[1] / "src" / "ferkit" / "assets" / "default"


def main(run_dirs: list[str], data: str | None) -> None:
    if len(run_dirs) > 1:
        run = ensemble_run(run_dirs, default_path("ensemble"))
    else:
        run = RunDir(Path(run_dirs[0]))
    TARGET.mkdir(parents=True, exist_ok=True)
    onnx = export_onnx(run.path, TARGET / "model.onnx", quantize="int8")
    shutil.copy2(run.config, TARGET / run.config.name)
    metrics = evaluate(onnx, data or run.read_config()["data"], split="test", output=TARGET)
    print(f"bundled {run.path} -> {TARGET}: {onnx.stat().st_size / 1e6:.1f} MB int8 model, "
          f"test accuracy {metrics['accuracy']:.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR")
    parser.add_argument("--data", help="the data to test on (default: the runs' own training data)")
    args = parser.parse_args()
    main(args.runs, args.data)
