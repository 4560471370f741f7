"""Export a trained Keras model to ONNX, carrying its class names and input size as metadata.

`quantize="int8"` adds ONNX Runtime's static int8 quantization (QDQ, per-channel weights),
calibrated on faces from the model's own training data: on one fernet network (the model bundled
before the ensemble) it cut batch-64 inference from 1.15 to 0.44 ms/face on a 2-core CPU for 0.03
points of PublicTest accuracy.
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np

from ferkit.choices import QUANTIZE
from ferkit.errors import FerkitError
from ferkit.models.loading import load_keras_model
from ferkit.models.onnx_graph import float_scores, interface_in_words, output_named, with_metadata
from ferkit.runs import RunDir, epochs_trained, metrics_beside, replacing

log = logging.getLogger("ferkit")

CALIBRATION_FACES = 256
FEW_CALIBRATION_FACES = 100  # below this a face or two sets an activation's whole 8-bit range


def export_onnx(model_path: str | Path, output: str | Path | None = None, quantize: str = "none",
                calibration: str | Path | None = None) -> Path:
    """Write `output` (default: model.onnx, or model-int8.onnx, in the run directory); return its path.

    `calibration` is FER2013 data for int8 quantization, by default the run's training data.
    """
    try:
        import onnx
    except ImportError:
        raise FerkitError("exporting to ONNX needs onnx and tf2onnx: pip install 'ferkit[train]'") from None
    if quantize not in QUANTIZE:
        raise FerkitError(f"unknown quantization {quantize!r}; choose from {', '.join(QUANTIZE)}")
    if calibration is not None and quantize != "int8":  # it would change nothing: said, not ignored
        raise FerkitError("calibration faces are for int8 quantization: add --quantize int8, or leave out "
                          "--calibration")
    model, info = load_keras_model(model_path)
    out = Path(output) if output else _default_output(Path(model_path), quantize)
    # Read first: data moved or deleted since training is said before the conversion's work.
    faces = _calibration_faces(calibration, info) if quantize == "int8" else None
    _constants_in_graph(model)
    model(np.zeros((1, info.image_size, info.image_size, 1), np.float32))  # Keras exports called models only
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "model.onnx"
        with warnings.catch_warnings():  # Keras' own tf2onnx code probes np.object: not for ferkit's users
            warnings.filterwarnings("ignore", category=FutureWarning, module="keras")
            model.export(str(plain), format="onnx", verbose=False)
        _check_converted(plain, model, info.image_size)
        if faces is not None:
            plain = _quantize_int8(plain, Path(tmp), faces)
        proto = output_named(onnx.load(str(plain)))
    # What the run recorded travels with the file: a copy out of the run still says how it scored
    recorded = {"metrics": metrics_beside(model_path), "epochs_trained": epochs_trained(model_path)}
    values = {"classes": json.dumps(list(info.classes)), "image_size": str(info.image_size),
              "config": json.dumps({**info.config, "quantize": quantize}), "recorded": json.dumps(recorded),
              **interface_in_words(info.image_size, info.classes, info.mirror_averaged)}
    with_metadata(proto, values)
    try:
        with replacing(out) as part:
            onnx.save(proto, str(part))
    except OSError as exc:  # a full disk, say: the file named, and any earlier export there kept
        raise FerkitError(f"cannot write {out}: {exc.strerror or exc}") from None
    return out


def _constants_in_graph(model) -> None:
    """A Normalization layer given its mean and variance (VGG19's preprocessing) holds them as eager
    tensors, which the traced graph captures and tf2onnx turns into inputs of the ONNX file, left
    for the caller to feed: ONNX Runtime then refuses every face. As numpy arrays they are traced
    into the graph as constants; the numbers are the same."""
    import keras

    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Normalization) and layer.input_mean is not None:
            layer.mean, layer.variance = np.asarray(layer.mean), np.asarray(layer.variance)


def _check_converted(path: Path, model, image_size: int) -> None:
    """The converted file scores as the Keras model does, checked before it is written anywhere: a
    file that loaded but took other inputs, or computed other numbers, was found only by whatever
    read the run next (a run reads its model.onnx before its model.keras)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [given.name for given in session.get_inputs()]
    if len(names) != 1:
        raise FerkitError(f"the ONNX conversion of this model takes {len(names)} inputs ({', '.join(names)}), "
                          "not one face batch: nothing was written. Please report it with the model's layers")
    faces = np.random.default_rng(0).uniform(0, 255, (4, image_size, image_size, 1)).astype(np.float32)  # pixels
    got, want = session.run(None, {names[0]: faces})[0], np.asarray(model(faces, training=False))
    if not np.allclose(got, want, atol=1e-4):
        raise FerkitError(f"the ONNX conversion of this model scores faces differently from it (by up to "
                          f"{np.abs(got - want).max():.3g}): nothing was written. Please report it with the model's "
                          "layers")


def _default_output(source: Path, quantize: str) -> Path:
    """The run's model.onnx (model-int8.onnx) for a run or its own model.keras; beside any other
    .keras file, its own name: a run directory reads its model.onnx before its model.keras, so
    exporting an older copy of the network as model.onnx would swap the run's model."""
    run = RunDir(source if source.is_dir() else source.parent)
    if source.is_dir() or source.name in (run.keras_model.name, run.model_json.name):
        return run.onnx_int8_model if quantize == "int8" else run.onnx_model
    return source.with_name(f"{source.stem}{'-int8' if quantize == 'int8' else ''}.onnx")


def _calibration_faces(given: str | Path | None, info) -> np.ndarray:
    from ferkit.data.preprocess import to_model_input
    from ferkit.data.sources import load_fer

    data = given or info.config.get("data")
    if not data:
        raise FerkitError("int8 quantization needs calibration faces: give --calibration DATA")
    if not Path(data).exists():
        raise FerkitError(f"--calibration {data}: not found" if given else
                          f"int8 quantization calibrates on the run's training data, {data}, which is not "
                          "there any more: give --calibration DATA")
    faces = load_fer(data)
    pool = np.flatnonzero(faces.usage == "train") if (faces.usage == "train").any() else np.arange(len(faces))
    pick = np.random.default_rng(0).choice(pool, min(CALIBRATION_FACES, len(pool)), replace=False)
    if len(pick) < FEW_CALIBRATION_FACES:  # each activation's range is read off these faces alone
        log.warning("int8 calibration on only %d face%s (%s): the 8-bit ranges may not fit other faces; "
                    "give --calibration data of a few hundred", len(pick), "s" * (len(pick) != 1), data)
    return to_model_input(faces.images[pick], info.image_size)


def _quantize_int8(path: Path, tmp: Path, faces: np.ndarray) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(path)).graph.input[0].name

    class Faces(CalibrationDataReader):
        def __init__(self):
            self._batches = iter([{name: faces[i:i + 1]} for i in range(len(faces))])

        def get_next(self):
            return next(self._batches, None)

    prepared, quantized = tmp / "prepared.onnx", tmp / "int8.onnx"
    quant_pre_process(str(path), str(prepared), skip_symbolic_shape=True)  # no sympy needed
    quantize_static(str(prepared), str(quantized), Faces(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True)
    # The logits, scores and their means in float: quantized, the scores came in 8-bit steps whose
    # rows summed to 0.985-1.008 and tied exactly for the top class, to save a few thousand
    # multiplications a face (the same repair as for older files, not a second one)
    onnx.save(float_scores(onnx.load(str(quantized))), str(quantized))
    return quantized
