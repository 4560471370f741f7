"""A trained Keras model from a run directory, a .keras file or the original project's model.json.

Apart from ferkit.runs, which names a run's files and reads its settings without Keras: inference on
ONNX Runtime needs that, never this.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import keras

from ferkit.errors import FerkitError, first_line
from ferkit.models import mirror  # registers the layer of mirror-averaged models
from ferkit.runs import ModelInfo, RunDir, model_info


def load_keras_model(model_path: str | Path) -> tuple[keras.Model, ModelInfo]:
    """Load a run directory's model.keras (or a .keras / model.json file) with its ModelInfo."""
    path = Path(model_path)
    if not path.exists():
        raise FerkitError(f"model not found: {path}")
    run = RunDir(path) if path.is_dir() else None
    if run is not None:
        path = run.keras_model
        if not path.is_file():
            raise FerkitError(f"{run.path} has no model.keras: {run.why_no_model()}")
    if path.suffix.lower() == ".json":
        model = _from_model_json(path)
    elif path.suffix.lower() == ".keras" and path.suffix != ".keras":
        raise FerkitError(f"Keras reads .keras files by a lower-case suffix only: rename {path} to "
                          f"{path.with_suffix('.keras').name}")
    elif path.suffix == ".keras":
        try:
            model = keras.models.load_model(path, compile=False)
        except (ValueError, OSError, zipfile.BadZipFile, KeyError) as exc:  # truncated, not a .keras zip, no config
            why = ("it holds a Python lambda (a Lambda layer), whose code Keras runs from no file (safe mode): save "
                   "the model without one") if "safe_mode" in str(exc) else "not a .keras file, or damaged"
            raise FerkitError(f"cannot load Keras model {path}: {why} ({first_line(exc)})") from None
        except TypeError as exc:  # another project's own layer (named deep in Keras' long message), another Keras
            missing = re.search(r"Could not locate (class|function) '[^']*'", str(exc))
            raise FerkitError(f"cannot load Keras model {path}: it holds a layer or function this Keras cannot "
                              f"rebuild (another project's own code, or another Keras version?) "
                              f"({missing[0] if missing else first_line(exc)})") from None
    else:
        raise FerkitError(f"unsupported model file {path}: give a run directory or a .keras file")
    info = model_info(model_path, *_classifier_shape(model, path))
    if not info.config and mirror.averages_mirrors(model):
        # a bare file says it itself: --tta would add the mirror view again, and export would not record it
        info = ModelInfo(info.classes, info.image_size, {"mirror_average": True})
    return model, info


def _classifier_shape(model, path: Path) -> tuple[int, int]:
    """(classes, face size) of a face classifier: one input of square gray faces, one output of
    class scores. Another Keras model (a feature map's output, a second input) had passed as one,
    and failed later inside scikit-learn or the export with a traceback."""
    try:
        given, answer = model.input_shape, model.output_shape
    except (AttributeError, ValueError):  # never built
        given = answer = None
    if not (isinstance(given, tuple) and len(given) == 4 and given[1] and given[1] == given[2] and given[3] == 1
            and isinstance(answer, tuple) and len(answer) == 2 and answer[1]):
        raise FerkitError(f"{path} is no face classifier ferkit can run: it needs one input of square gray faces, "
                          f"(batch, size, size, 1), and one output of class scores, (batch, classes); it has "
                          f"{given} -> {answer}")
    return answer[1], given[1]


def _from_model_json(path: Path) -> keras.Model:
    """The original project's pair, model.json + model.weights.h5 beside it; any other .json (a run's
    config.json, say) is a clear error, not Keras' traceback."""
    weights = path.with_name("model.weights.h5")
    try:
        model = keras.models.model_from_json(path.read_text(encoding="utf-8"))
    except (ValueError, TypeError, KeyError, AttributeError):  # not JSON, or JSON of no Keras object
        model = None
    if not isinstance(model, keras.Model):
        raise FerkitError(f"{path} is not a Keras model.json: give a run directory, a .keras or an .onnx file")
    if not weights.is_file():
        raise FerkitError(f"{path} needs its weights beside it: {weights} not found")
    try:
        model.load_weights(weights)
    except (ValueError, OSError) as exc:
        raise FerkitError(f"cannot load {weights} into {path}'s model: {first_line(exc)}") from None
    return model
