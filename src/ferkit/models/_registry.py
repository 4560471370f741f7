"""Model registry: architectures register a builder by name; `create_model` is the one way in.

Modelled on timm's register_model/create_model: adding an architecture is one new file with a
decorated builder, and every caller (training, CLI, compare) picks it up by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError, first_line, is_whole_number
from ferkit.models._blocks import keras_weights_arg

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_model(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Register `builder(image_size, num_classes, weights, **kw) -> keras.Model` under its name.

    A builder whose `weights` defaults to "imagenet" has ImageNet weights; others refuse them.
    """
    _BUILDERS[builder.__name__] = builder
    return builder


def list_models() -> list[str]:
    return sorted(_BUILDERS)


# What keras.Model.load_weights reads: a .keras model, .weights.h5 (legacy .h5, .hdf5), sharded .weights.json
KERAS_WEIGHTS = (".keras", ".h5", ".hdf5", ".weights.json")


def create_model(name: str, *, image_size: int, num_classes: int, weights: str = "none", **kwargs):
    """Build architecture `name` for (image_size, image_size, 1) faces and `num_classes` outputs.

    `weights` is "imagenet" (Keras' own download, transfer models only), "none", or a local path.
    """
    check_model(name, weights, **kwargs)
    for what, value, least in (("image_size", image_size, 1), ("num_classes", num_classes, 2)):
        if not is_whole_number(value, least):
            raise FerkitError(f"{what} must be a whole number, at least {least}, got {value!r}")
    try:
        return _BUILDERS[name](image_size=image_size, num_classes=num_classes, weights=weights, **kwargs)
    except (ValueError, TypeError, IndexError) as exc:  # an option's value the network cannot take
        raise FerkitError(f"model {name!r} cannot be built with the options {kwargs or '(its defaults)'}: "
                          f"{first_line(exc, None)}") from None
    except Exception as exc:
        if not _out_of_memory(exc):
            raise
        raise FerkitError(f"model {name!r} with the options {kwargs or '(its defaults)'} on {image_size}-px faces "
                          "does not fit in memory: give it fewer or narrower layers") from None


def _out_of_memory(exc: BaseException) -> bool:
    """Each backend says it its own way (TensorFlow's ResourceExhaustedError, JAX's RESOURCE_EXHAUSTED,
    PyTorch's OutOfMemoryError or "can't allocate memory"); none is imported to ask."""
    said = str(exc)[:500]
    return (isinstance(exc, MemoryError) or type(exc).__name__ in ("ResourceExhaustedError", "OutOfMemoryError")
            or "RESOURCE_EXHAUSTED" in said or "can't allocate memory" in said)


def check_model(name: str, weights: str = "none", **kwargs) -> None:
    """What `create_model` would refuse, found without building: `compare` checks every recipe's
    model this way before the first one trains for hours."""
    if name not in _BUILDERS:
        raise FerkitError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    parameters = inspect.signature(_BUILDERS[name]).parameters
    options = [p for p in parameters if p not in ("image_size", "num_classes", "weights")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:  # a typo in a recipe's [model_options]
        raise FerkitError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(options) or 'none'}")
    if weights == "imagenet" and parameters["weights"].default != "imagenet":  # transfer builders default to it
        raise FerkitError(f"model {name!r} has no ImageNet weights: use --weights none or a path")
    path = keras_weights_arg(weights)
    if path not in (None, "imagenet") and not Path(path).is_file():
        raise FerkitError(f"weights file not found: {weights} (use imagenet, none or a path)")
    if path not in (None, "imagenet") and not path.lower().endswith(KERAS_WEIGHTS):
        raise FerkitError(f"weights {weights}: Keras reads weights from a {', '.join(KERAS_WEIGHTS)} file (a run's "
                          "model.keras or model.weights.h5), not this one")
