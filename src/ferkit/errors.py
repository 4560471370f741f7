"""The one exception type the CLI turns into a one-line message instead of a traceback, and the
checks many of those messages share."""

import math
import numbers
from importlib import import_module
from types import ModuleType


class FerkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def first_line(exc: BaseException, most: int | None = 120) -> str:
    """The first line of another library's message, for a one-line error (its type's name where it
    says nothing): Keras' and matplotlib's run to many lines."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:most]


def is_whole_number(value: object, least: int) -> bool:
    """An int (numpy's too, not a bool) of at least `least`: what counts of faces, frames, threads
    and pixels must be, whether a user typed them or a program passed them."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= least


def is_real_number(value: object) -> bool:
    """A finite int or float (numpy's too, not a bool): what a share, a threshold or a margin must be,
    before its range is checked."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value)


# ferkit's own requirements, by the module's name: missing, the install is broken, and no extra helps
CORE_PACKAGES = {"numpy": "numpy", "cv2": "opencv-python-headless", "onnxruntime": "onnxruntime",
                 "matplotlib": "matplotlib", "tqdm": "tqdm"}
# Keras backends other than TensorFlow, asked for by KERAS_BACKEND (or keras.json): no extra of ferkit's has them
_JAX = ("jax", "pip install jax, or jax[cuda12] for a GPU")
KERAS_BACKENDS = {"jax": _JAX, "jaxlib": _JAX, "torch": ("torch", "pip install torch")}  # module: backend, install
SERVE_MODULES = ("fastapi", "starlette", "uvicorn", "multipart", "PIL", "idna")


def missing_package(name: str) -> str:
    """The extra that installs a missing package, said the same way by the CLI and the Python API."""
    top = name.split(".")[0]
    if top in CORE_PACKAGES:
        return f"this needs {top}, which is not installed (a broken install?): pip install {CORE_PACKAGES[top]}"
    if top in KERAS_BACKENDS:  # KERAS_BACKEND named it: the train extra brings TensorFlow, not this
        backend, install = KERAS_BACKENDS[top]
        return (f"this needs {top}, which is not installed: Keras is set to its {backend} backend (KERAS_BACKEND, "
                f"or ~/.keras/keras.json); {install}, or set KERAS_BACKEND=tensorflow")
    extra = "serve" if top in SERVE_MODULES else "train"
    return f"this needs {name}, which is not installed: pip install 'ferkit[{extra}]'"


def import_naming_extra(module: str, what: str = "") -> ModuleType:
    """`module`, imported where the Python API first needs an extra: a package it lacks is named with
    the extra that installs it, as the CLI names it, not as Python's bare "No module named". A module
    of ferkit's own missing is a broken install, which no extra mends: Python's error stays."""
    try:
        return import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] == "ferkit":
            raise
        raise ModuleNotFoundError(f"{what}{missing_package(exc.name)}", name=exc.name) from exc
