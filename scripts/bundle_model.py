"""Replace the bundled default model with a finished run directory, in one command.

    python scripts/bundle_model.py RUN_DIR

Exports RUN_DIR to ONNX (with its classes and input size as metadata) and copies model.onnx,
config.json and metrics.json into src/ferkit/assets/default/, where `EmotionRecognizer()`,
`ferkit predict` and `ferkit info` find them. The current bundled model was made by:

    ferkit train ../shared/data/fer2013.zip --epochs 30 --output runs/default-e30   (default recipe)
    python scripts/bundle_model.py runs/default-e30
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from ferkit.models.export import export_onnx
from ferkit.runs import RunDir

TARGET = Path(__file__).resolve().parents[1] / "src" / "ferkit" / "assets" / "default"


def main(run_dir: str) -> None:
    run = RunDir(Path(run_dir))
    onnx = export_onnx(run.path)
    TARGET.mkdir(parents=True, exist_ok=True)
    for source in (onnx, run.config, run.metrics, run.confusion_plot):
        shutil.copy2(source, TARGET / source.name)
    print(f"bundled {run.path} -> {TARGET} ({onnx.stat().st_size / 1e6:.1f} MB model)")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
