"""Frozen-backbone detection for feature caching.

The seed project froze its whole ImageNet base and still pushed every image through it every
epoch. With nothing in the backbone trainable, its output is a fixed function of the image, so
ferkit computes it once and trains only the head: same result, far less work.
"""

from __future__ import annotations

import keras


def frozen_backbone(model: keras.Model) -> keras.Model | None:
    """The model's `backbone` sub-model when it has no trainable weights, else None."""
    try:
        backbone = model.get_layer("backbone")
    except ValueError:
        return None
    return backbone if not backbone.trainable_weights else None
