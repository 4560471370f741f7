"""Model registry: architectures register a builder by name; `create_model` is the one way in.

Modelled on timm's register_model/create_model: adding an architecture is one new file with a
decorated builder, and every caller (training, CLI, compare) picks it up by name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ferkit.errors import FerkitError

_BUILDERS: dict[str, Callable[..., Any]] = {}


def register_model(builder: Callable[..., Any]) -> Callable[..., Any]:
    """Register `builder(image_size, num_classes, weights, **kw) -> keras.Model` under its name."""
    _BUILDERS[builder.__name__] = builder
    return builder


def list_models() -> list[str]:
    return sorted(_BUILDERS)


def create_model(name: str, *, image_size: int, num_classes: int, weights: str = "none", **kwargs):
    """Build architecture `name` for (image_size, image_size, 1) faces and `num_classes` outputs.

    `weights` is "imagenet" (Keras' own download, transfer models only), "none", or a local path.
    """
    if name not in _BUILDERS:
        raise FerkitError(f"unknown model {name!r}; choose from {', '.join(list_models())}")
    builder = _BUILDERS[name]
    options = [p for p in inspect.signature(builder).parameters
               if p not in ("image_size", "num_classes", "weights")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:  # a typo in a recipe's [model_options]
        raise FerkitError(f"model {name!r} has no option {', '.join(map(repr, unknown))}; "
                          f"its options: {', '.join(options) or 'none'}")
    return builder(image_size=image_size, num_classes=num_classes, weights=weights, **kwargs)
