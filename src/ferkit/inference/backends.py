"""Model backends: ONNX Runtime (the default, no TensorFlow needed) and Keras, behind one interface.

A backend maps a (N, size, size, 1) float32 batch of raw gray faces to (N, classes) probabilities
and knows its class names and input size.
"""

from __future__ import annotations

import functools
import json
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Protocol

import numpy as np

from ferkit.errors import FerkitError, first_line, import_naming_extra, is_whole_number
from ferkit.hardware import cpu_flags, most_threads, usable_cores
from ferkit.inference.tta import predict_tta
from ferkit.runs import (ONNX_META, ModelInfo, RunDir, checked_config, checked_metrics, epochs_trained,
                         metrics_beside, model_info, run_of)

log = logging.getLogger("ferkit")

DEFAULT_MODEL = "default"
# int8 models: on x86 CPUs without VNNI (AVX2 alone) ONNX Runtime's fast u8s8 kernels add pairs of
# products in 16 bits and saturate, and the bundled model lost 0.5 points on PublicTest there (0.6829
# against 0.6877); its exact u8u8 kernels (`session.x64quantprecision`) are asked for where the CPU
# reports none of these flags. CPUs with them accumulate in 32 bits, where u8s8 is exact and faster
# (benchmarks/bench_int8_kernels.py). No-op on other architectures.
VNNI_CPU_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
CHUNK = 256  # faces per forward pass: bounds memory when a whole data set is predicted at once


class Backend(Protocol):
    info: ModelInfo
    name: str
    recorded: dict  # {"metrics": ..., "epochs_trained": ...} its file carries, where it does

    def predict(self, batch: np.ndarray) -> np.ndarray: ...


def _chunked(run, batch: np.ndarray, num_classes: int, progress: str = "", shown: bool | None = None) -> np.ndarray:
    """`run` over CHUNK faces at a time, with a progress bar named `progress` when one is asked for:
    `shown` None on a terminal only (in a log file its redraws are noise), True everywhere (a notebook)."""
    if not len(batch):
        return np.zeros((0, num_classes), np.float32)
    starts = range(0, len(batch), CHUNK)
    if not progress or len(batch) <= CHUNK:
        return np.concatenate([run(batch[i:i + CHUNK]) for i in starts])
    from tqdm import tqdm

    parts = []
    disable = None if shown is None else False
    with tqdm(total=len(batch), unit="face", desc=progress, leave=False, disable=disable) as bar:
        for start in starts:
            parts.append(run(batch[start:start + CHUNK]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def bundled_model_dir() -> Path:
    return Path(str(resources.files("ferkit.assets") / "default"))


def _models_of(run: RunDir | None) -> list[Path]:
    """The models a run directory holds, fastest to load first."""
    return [] if run is None else [file for file in run.model_files
                                   if file != run.model_json and file.is_file()]


def resolve_model(model: str | os.PathLike | None) -> Path:
    """`default`/None -> the bundled model's .onnx; a run directory -> its model.onnx (else
    model-int8.onnx) when exported (faster, and no TensorFlow), else the directory itself for Keras."""
    if model is None or str(model) == DEFAULT_MODEL:
        if model is not None and Path(DEFAULT_MODEL).is_dir():  # `train --output default`, say
            _warn_once(f"the model is the bundled one, not the folder {DEFAULT_MODEL} here: give "
                       f"./{DEFAULT_MODEL} for that")
        path = bundled_model_dir() / "model.onnx"
        if not path.is_file():
            raise FerkitError("the bundled default model is missing from this installation")
        return path
    path = Path(model)
    if not path.exists():
        raise FerkitError(f"model not found: {path}")
    if path.is_dir():
        found = _models_of(RunDir(path))
        if not found:  # said here: Keras would be imported only to say the same, or asked for
            raise FerkitError(f"{path} holds no model (model.onnx or model.keras): {RunDir(path).why_no_model()}")
        return found[0] if found[0].suffix == ".onnx" else path
    if path.suffix.lower() not in (".onnx", ".keras", ".json"):
        # Said here, before Keras is imported: an ONNX-only install would otherwise ask for Keras.
        raise FerkitError(f"unsupported model file {path}: give a run directory, a .keras or an .onnx file")
    return path


@functools.cache
def _warn_once(message: str) -> None:
    """A model is resolved more than once a command (Keras' quiet import, then the load)."""
    log.warning(message)


class OnnxBackend:
    """ONNX Runtime on the CPU, threads set for small machines (intra-op = cores up to 4, no inter-op).

    The CPU also where onnxruntime-gpu is installed: its CUDA provider has no kernels for the int8
    layers (QLinearConv, QLinearAdd) of the bundled model and of `export --quantize int8`
    (microsoft/onnxruntime#12229, #24807), so each layer would run on the CPU between copies to
    and from the GPU, slower than the CPU alone.
    """

    def __init__(self, path: Path, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise FerkitError("ONNX models need onnxruntime: pip install onnxruntime") from None
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or min(usable_cores(), 4)
        options.inter_op_num_threads = 1
        if not cpu_flags(VNNI_CPU_FLAGS):
            options.add_session_config_entry("session.x64quantprecision", "1")
        try:
            self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for bad files
            raise FerkitError(f"cannot load ONNX model {path}: {first_line(exc, None)}") from None
        self.info, self.recorded = _described(path, self._session.get_modelmeta().custom_metadata_map)
        inputs = [given.name for given in self._session.get_inputs()]
        if len(inputs) != 1:  # seed-vgg19 runs exported before ferkit put their constants in the graph
            raise FerkitError(f"ONNX model {path} takes {len(inputs)} inputs ({', '.join(inputs)}), not one batch "
                              "of faces: export it again (ferkit export RUN) from its .keras model")
        self._input = inputs[0]
        self.name = str(path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        run = lambda chunk: self._session.run(None, {self._input: chunk.astype(np.float32, copy=False)})[0]
        return _chunked(run, batch, len(self.info.classes))


def _described(path: Path, meta: dict[str, str]) -> tuple[ModelInfo, dict]:
    """What an exported file says of itself (ferkit.models.export): its ModelInfo, and what its run
    had recorded (test metrics, epochs trained), so that a copy out of the run still says them."""
    if ONNX_META["classes"] not in meta:
        raise FerkitError(f"{path} has no ferkit metadata: export it with `ferkit export`")
    try:
        config = checked_config(json.loads(meta.get(ONNX_META["config"], "{}")), f"{path}'s metadata")
        classes = checked_config({"classes": json.loads(meta[ONNX_META["classes"]])}, f"{path}'s metadata")["classes"]
        info = ModelInfo(tuple(classes), int(meta[ONNX_META["image_size"]]), config)
        recorded = json.loads(meta.get(ONNX_META["recorded"], "{}"))
    except (KeyError, ValueError, TypeError):  # cut short or hand-edited: not json, no number
        raise FerkitError(f"{path}'s ferkit metadata is damaged: export it again with `ferkit export`") from None
    recorded = recorded if isinstance(recorded, dict) else {}
    epochs = recorded.get("epochs_trained")
    return info, {"metrics": checked_metrics(recorded.get("metrics")),
                  "epochs_trained": epochs if isinstance(epochs, int) and not isinstance(epochs, bool) else None}


class KerasBackend:
    """A run directory or .keras file through Keras (needs the training extra)."""

    recorded: dict = {}  # what an .onnx file carries of its run; a Keras model's run is beside it

    def __init__(self, path: Path):
        loading = import_naming_extra("ferkit.models.loading")  # deferred: inference with ONNX needs no Keras
        self._model, self.info = loading.load_keras_model(path)
        self.name = str(path)

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """convert_to_numpy, not np.asarray: on PyTorch the scores are a tensor that needs gradients
        (on the GPU, too), which numpy refuses."""
        import keras

        return _chunked(lambda chunk: keras.ops.convert_to_numpy(self._model(chunk, training=False)), batch,
                        len(self.info.classes))


def predict_scores(backend: Backend, batch: np.ndarray, tta: bool = False, progress: bool = False,
                   everywhere: bool = False) -> np.ndarray:
    """The backend's probabilities, averaged over `--tta`'s views when asked; one place for the
    recognizer and evaluation, so both leave out the mirror view for a mirror-averaged model.
    `progress`: a bar on a terminal, or `everywhere` (a notebook, which is none).

    A CHUNK of faces at a time, so that TTA's copies of a whole data set (10 views of 35,887 faces:
    3.3 GB) are never in memory at once, and a `progress` bar has something to count.
    """
    def score(part: np.ndarray) -> np.ndarray:
        return predict_tta(backend.predict, part, backend.info.mirror_averaged) if tta else backend.predict(part)

    label = ("scoring with --tta" if tta else "scoring") if progress else ""
    return _chunked(score, batch, len(backend.info.classes), label, shown=True if everywhere else None)


def load_backend(model: str | os.PathLike | None = DEFAULT_MODEL, threads: int | None = None) -> Backend:
    """`threads`: ONNX Runtime's for an .onnx model (default: the CPU's cores, at most 4). A Keras
    model runs on TensorFlow's own threads, so it is told, not silently dropped."""
    if threads is not None:  # the bound read only where there is a number to check
        most = most_threads()
        if not (is_whole_number(threads, 1) and threads <= most):
            raise FerkitError(f"threads is a whole number, at least 1 and at most {most} (4 x the cores "
                              f"ferkit may use), got {threads!r}")
    path = resolve_model(model)
    if path.suffix.lower() == ".onnx":
        return OnnxBackend(path, int(threads) if threads is not None else None)
    if threads is not None:
        log.warning("threads=%d is for ONNX models: %s runs on TensorFlow's own threads (ferkit export makes "
                    "it an ONNX model)", threads, path)
    return KerasBackend(path)


def recorded_metrics(backend: Backend) -> dict:
    """The test metrics saved beside the model (metrics.json of its run directory), or in an .onnx
    file exported from a run, if any."""
    return metrics_beside(backend.name) or backend.recorded.get("metrics", {})


def describe_model(model: str | os.PathLike | None = DEFAULT_MODEL) -> dict:
    """What `ferkit info` prints: classes, input size, configuration and recorded test metrics, and,
    from history.csv, how far training has gone where a run has no model yet (it is training, or was
    stopped in its first session) or a resume has gone past the model it had saved.

    A run directory not exported to ONNX is described from its config.json, without loading its
    Keras model: TensorFlow's seconds of start-up (and the train extra) for what a file says."""
    bare = _run_without_model(model)
    path = bare.path if bare else resolve_model(model)
    # no model and no test metrics: training, or stopped before it saved (not a finished run whose
    # model.keras was packed away, as scripts/half_weights.py does)
    unfinished = bare is not None and not bare.metrics.is_file()
    recorded: dict = {}
    if path.is_dir():
        info, name = model_info(path), str(path)
    else:
        backend = load_backend(path)
        info, name, recorded = backend.info, backend.name, backend.recorded
    metrics, run = metrics_beside(name), run_of(name)
    trained = None if unfinished else epochs_trained(name, metrics)
    trained = trained if trained is not None else recorded.get("epochs_trained")
    progress = run.progress(info.config.get("checkpoint_on", "val_loss")) if run is not None else {}
    ahead = unfinished or (trained is not None and (progress.get("epochs_so_far") or 0) > trained)
    return {"model": name, "classes": list(info.classes), "image_size": info.image_size, "config": info.config,
            "metrics": metrics or recorded.get("metrics", {}), "epochs_trained": trained,
            "training": progress if ahead else {}}


def _run_without_model(model: str | os.PathLike | None) -> RunDir | None:
    """A run directory that has settings but no model yet: describable from its files all the same."""
    if model is None or str(model) == DEFAULT_MODEL or not Path(model).is_dir():
        return None
    run = RunDir(Path(model))
    return run if run.config.is_file() and not _models_of(run) else None
