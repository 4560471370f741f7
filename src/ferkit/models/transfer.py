"""The seed project's transfer models: an ImageNet backbone (frozen by default) and a dense head.

Each is built as `backbone` -> `head` so that, with the backbone frozen, training can compute the
backbone's features once and fit only the head (see ferkit.training.features).
"""

from __future__ import annotations

import warnings

import keras
from keras import layers

from ferkit.errors import FerkitError
from ferkit.models._blocks import classifier, compose, face_input, keras_weights_arg, load_local_weights
from ferkit.models._registry import register_model


# keras.applications.vgg19.preprocess_input ("caffe" mode) on a gray face repeated in 3 channels.
VGG_BGR_MEAN = [103.939, 116.779, 123.68]


def _backbone(base_fn, image_size: int, weights: str, scale_layer, pool: bool, freeze: bool):
    inputs = face_input(image_size)
    rgb = layers.Concatenate(name="gray_to_rgb")([inputs, inputs, inputs])
    try:
        base = base_fn(include_top=False, weights=keras_weights_arg(weights),
                       input_shape=(image_size, image_size, 3))
    except Exception as exc:  # Keras' download raises a bare Exception: "URL fetch failure on <url>: ..."
        if "URL fetch failure" not in str(exc):
            raise
        raise FerkitError(f"could not download the ImageNet weights of {base_fn.__name__} ({exc}): connect this "
                          "machine once (Keras keeps them in ~/.keras/models), or give --weights none or a "
                          "local weights file") from None
    base.trainable = not freeze
    x = base(scale_layer(rgb), training=False if freeze else None)
    x = layers.GlobalAveragePooling2D()(x) if pool else layers.Flatten()(x)
    return keras.Model(inputs, x, name="backbone")


def _head(features_shape, hidden: tuple[int, ...], num_classes: int, batch_norm: bool, dropout: float):
    inputs = keras.Input(features_shape, name="features")
    x = layers.BatchNormalization()(inputs) if batch_norm else inputs
    for units in hidden:
        x = layers.Dense(units, activation="relu")(x)
        x = layers.Dropout(dropout)(x) if dropout else x
    return keras.Model(inputs, classifier(x, num_classes), name="head")


def _transfer(name: str, base_fn, image_size: int, weights: str, scale_layer, pool: bool, freeze: bool,
              head) -> keras.Model:
    """Backbone + `head(features_shape)`. A local `weights` file is either Keras' own weights of the
    backbone alone (its ImageNet file, copied to a machine without internet) or a ferkit run's
    weights of this whole model (model.keras or model.weights.h5), as fernet and custom take."""
    if not isinstance(freeze, bool):  # `freeze = "false"` in a recipe: a string is true
        raise FerkitError(f"model {name}: freeze must be true or false, got {freeze!r}")
    local = keras_weights_arg(weights) not in (None, "imagenet")
    try:
        with warnings.catch_warnings():  # Keras' line per layer of a file it then refuses
            warnings.simplefilter("ignore" if local else "default")
            backbone = _backbone(base_fn, image_size, weights, scale_layer, pool, freeze)
    except (ValueError, OSError):  # OSError: h5py on a file that is no HDF5 at all
        if not local:
            raise
        backbone = _backbone(base_fn, image_size, "none", scale_layer, pool, freeze)
        return load_local_weights(compose(backbone, head(backbone.output_shape[1:]), name), weights)
    return compose(backbone, head(backbone.output_shape[1:]), name)


@register_model
def vgg19(image_size: int, num_classes: int, weights: str = "imagenet", freeze: bool = True,
          dropout: float = 0.0) -> keras.Model:
    """Frozen VGG19 conv layers, then Flatten -> BatchNorm -> Dense 4096 -> Dense 1024 -> softmax."""
    scale = layers.Normalization(mean=VGG_BGR_MEAN, variance=[1.0, 1.0, 1.0], name="vgg_preprocess")
    return _transfer("vgg19", keras.applications.VGG19, image_size, weights, scale, False, freeze,
                     lambda features: _head(features, (4096, 1024), num_classes, True, dropout))


@register_model
def mobilenetv2(image_size: int, num_classes: int, weights: str = "imagenet", freeze: bool = True,
                dropout: float = 0.2) -> keras.Model:
    """Frozen MobileNetV2, global average pooling, then a small dense head."""
    scale = layers.Rescaling(1 / 127.5, offset=-1, name="mobilenet_preprocess")
    return _transfer("mobilenetv2", keras.applications.MobileNetV2, image_size, weights, scale, True, freeze,
                     lambda features: _head(features, (128,), num_classes, False, dropout))
