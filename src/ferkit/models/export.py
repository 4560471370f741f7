"""Export a trained Keras model to ONNX, carrying its class names and input size as metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ferkit.errors import FerkitError
from ferkit.runs import RunDir, load_keras_model

# The keys ferkit.inference.backends reads back; kept here as plain strings to avoid a cycle.
META = {"classes": "ferkit.classes", "image_size": "ferkit.image_size", "config": "ferkit.config"}


def export_onnx(model_path: str | Path, output: str | Path | None = None) -> Path:
    """Write `output` (default: model.onnx in the run directory) and return its path."""
    try:
        import onnx
    except ImportError:
        raise FerkitError("exporting to ONNX needs onnx and tf2onnx: pip install 'ferkit[train]'") from None
    model, info = load_keras_model(model_path)
    source = Path(model_path)
    out = Path(output) if output else RunDir(source if source.is_dir() else source.parent).onnx_model
    model(np.zeros((1, info.image_size, info.image_size, 1), np.float32))  # Keras exports called models only
    model.export(str(out), format="onnx", verbose=False)
    proto = onnx.load(str(out))
    values = {"classes": json.dumps(list(info.classes)), "image_size": str(info.image_size),
              "config": json.dumps(info.config)}
    for key, value in values.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = META[key], value
    onnx.save(proto, str(out))
    return out
