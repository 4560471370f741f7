"""ferkit: facial emotion recognition on FER2013.

`import ferkit` stays light: the training stack (Keras, TensorFlow) loads only when `train` or
`evaluate` is first used, and inference (`EmotionRecognizer`) runs on ONNX Runtime without it.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib.util import find_spec
from typing import TYPE_CHECKING

# On Linux x86-64 TensorFlow turns its oneDNN kernels on by itself only on CPUs with AVX-512
# VNNI/BF16, AVX-VNNI or AMX; on an AVX2-only 2-core EPYC its other kernels trained the default's
# network at 60 faces/s against 84 with oneDNN (benchmarks/ablations/README.md). Set before Keras
# imports TensorFlow (so no effect if the user imported it first); a user's own value, 0 included,
# wins. Elsewhere (ARM) unmeasured, so left to TensorFlow.
if platform.machine().lower() in ("x86_64", "amd64"):
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
# Too late then: training says so (ferkit.training.precision.warn_if_onednn_missed).
_TENSORFLOW_FIRST = "tensorflow" in sys.modules

from ferkit.data.labels import EMOTIONS  # noqa: E402
from ferkit.errors import FerkitError, import_naming_extra  # noqa: E402

__version__ = "0.1.0"


def _installed(name: str) -> bool:
    try:
        return find_spec(name) is not None
    except (ImportError, ValueError):
        return False


__all__ = ["EMOTIONS", "EmotionRecognizer", "Face", "FerkitError", "compare", "evaluate", "train"]
if not all(map(_installed, ("keras", "sklearn"))):  # an install without the train extra: what it can import
    __all__ = __all__[:4]

if TYPE_CHECKING:
    from ferkit.evaluation import evaluate
    from ferkit.inference import EmotionRecognizer, Face
    from ferkit.training import train
    from ferkit.training.compare import compare

_LAZY = {"train": "ferkit.training", "compare": "ferkit.training.compare", "evaluate": "ferkit.evaluation",
         "EmotionRecognizer": "ferkit.inference", "Face": "ferkit.inference"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_naming_extra(_LAZY[name], f"ferkit.{name}: "), name)
    raise AttributeError(f"module 'ferkit' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The lazy names too, for `dir(ferkit)` and an editor's or IPython's completion; not the modules
    this one imports for itself (os, sys), which had been listed beside them."""
    return sorted({*(name for name in globals() if name.startswith("__") or name == "__version__"), *__all__})
