"""The run directory: the one place that names the files a training run writes and inference reads.

A run directory is ferkit's public model format:

    config.json            full resolved training configuration (classes, image_size, ...)
    model.keras            the trained model (Keras' native format)
    model.onnx             the same, exported for ONNX Runtime (`ferkit export`)
    model-int8.onnx        the same, int8-quantized (`ferkit export --quantize int8`)
    model.json             model structure + model.weights.h5 weights (the original project's format)
    metrics.json           test-split metrics (see ferkit.evaluation.metrics)
    history.csv            per-epoch loss/accuracy, loss.png and accuracy.png plotted from it
    confusion_matrix.png   test-split confusion matrix
    predictions.csv        each test face's file, label, prediction and probabilities
    mistakes.png           the test faces the model got wrong with the most confidence
    checkpoints/           best weights so far, the backup that `--resume` continues from, a
                           distilled run's teacher targets (teacher.npy), so a resume uses the same ones,
                           and split.json, the split's sizes and digest, so a resume sees the same faces

`directory` holds the run directory itself (`RunDir`); `description` what a trained model says about
itself from it. Both are imported from here, where they have always been.
"""

from __future__ import annotations

from typing import Any

from ferkit.runs.directory import (RunDir, checked_config, default_path, output_folder, read_history, replacing,
                                  write_json)
from ferkit.runs.description import (ONNX_META, SPLIT_PROTOCOL, ModelInfo, checked_metrics, count_networks,
                                    epochs_trained, member_summary, metrics_beside, model_info, run_of,
                                    test_faces_drawn)

__all__ = ["ONNX_META", "SPLIT_PROTOCOL", "ModelInfo", "RunDir", "checked_config", "checked_metrics", "count_networks",
           "default_path", "epochs_trained", "member_summary", "metrics_beside", "model_info", "output_folder",
           "read_history", "replacing", "run_of", "test_faces_drawn", "write_json"]


def __getattr__(name: str) -> Any:
    """`ferkit.runs.load_keras_model`, where the README had users load a run's model until it moved to
    ferkit.models.loading: old code still works, told where it lives now. Only on that call: this
    module stays Keras-free."""
    if name == "load_keras_model":
        import warnings

        from ferkit.models.loading import load_keras_model

        warnings.warn("ferkit.runs.load_keras_model is now ferkit.models.loading.load_keras_model",
                      DeprecationWarning, stacklevel=2)
        return load_keras_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
