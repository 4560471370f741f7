"""fernet: ferkit's own residual CNN for 48x48 faces, sized for accuracy per FLOP on a CPU.

A 3x3 stem at full resolution, then residual stages with the width doubling as the resolution
halves (48 -> 24 -> 12 -> 6), so every conv costs about the same FLOPs; global average pooling
and dropout instead of a large dense head. `blocks` sets the depth of each stage. The default
recipe uses (0, 1, 2, 2): on a 2-core CPU one block at 48x48 took most of the time of a second
block in each later stage, and those learned more; the second at 24 px cost a fifth of a step
for no measurable gain in the default's hour (benchmarks/ablations/README.md). `se_ratio`
adds squeeze-and-excitation to every block. `crop` cuts that many pixels off every side first.
"""

from __future__ import annotations


import keras
from keras import layers

from ferkit.errors import FerkitError, is_whole_number
from ferkit.models._blocks import classifier, face_input, load_local_weights
from ferkit.models._registry import register_model


def _conv_bn(x, filters: int, kernel: int = 3, strides: int = 1, relu: bool = True):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    return layers.ReLU()(x) if relu else x


def squeeze_excite(x, ratio: float):
    """Channel attention (Hu et al., SE-Net): each channel rescaled by a gate computed from every
    channel's mean. In the default layout 0.2M multiply-adds per face against the convs' 227M, yet
    3-6% of training speed on a 2-core CPU: its ops are small and many (benchmarks/ablations)."""
    filters = x.shape[-1]
    gate = layers.GlobalAveragePooling2D(keepdims=True)(x)
    gate = layers.Dense(max(1, round(filters * ratio)), activation="relu")(gate)
    gate = layers.Dense(filters, activation="sigmoid")(gate)
    return layers.Multiply()([x, gate])


def residual_block(x, filters: int, strides: int = 1, se_ratio: float = 0.0):
    """Two 3x3 convs (squeezed and excited when `se_ratio` > 0) plus a shortcut (a strided 1x1
    projection when the shape changes)."""
    y = _conv_bn(x, filters, strides=strides)
    y = _conv_bn(y, filters, relu=False)
    if se_ratio > 0:
        y = squeeze_excite(y, se_ratio)
    shortcut = x
    if strides != 1 or x.shape[-1] != filters:
        shortcut = _conv_bn(x, filters, kernel=1, strides=strides, relu=False)
    return layers.ReLU()(layers.Add()([y, shortcut]))


def _check_crop(crop, image_size: int, stages: int) -> None:
    """At least 2 px must be left for the last stage, after its stages - 1 halvings."""
    least = 2 ** stages
    most = max(0, (image_size - least) // 2)
    if not is_whole_number(crop, 0) or crop > most:
        raise FerkitError(f"fernet's crop is the whole number of pixels cut off each side of the "
                          f"{image_size}-px face, 0 to {most} (at least {least} px left), got {crop!r}")


@register_model
def fernet(
    image_size: int,
    num_classes: int,
    weights: str = "none",
    widths: tuple[int, ...] = (32, 64, 128, 256),
    blocks: tuple[int, ...] = (1, 1, 1, 1),
    dropout: float = 0.3,
    se_ratio: float = 0.0,
    crop: int = 0,
) -> keras.Model:
    """`crop` > 0: the convs see only the face's centre, (image_size - 2 crop) px square, for about
    (1 - 2 crop / image_size)^2 of the multiply-adds. The input stays the whole face, so preprocessing,
    the teacher and the exported model are unchanged; with `augment` on, the augmentation's random
    shift moves the face under the fixed window: random crops in training, the centre at inference
    (the 40-px crops of 48-px faces of Khaireddin & Chen's 73% FER2013 network)."""
    if not widths or len(widths) != len(blocks) or any(count < 0 for count in blocks):
        raise FerkitError(f"fernet needs one width and one block count (0 or more) per stage, "
                          f"got widths {list(widths)} and blocks {list(blocks)}")
    if not 0 <= se_ratio <= 1:
        raise FerkitError(f"fernet's se_ratio is the squeeze's share of a block's channels, 0 (off) to 1, "
                          f"got {se_ratio}")
    _check_crop(crop, image_size, stages=len(widths))
    if image_size < 2 ** (len(widths) - 1):  # each stage after the first halves the face
        raise FerkitError(f"fernet with {len(widths)} stages needs image_size >= {2 ** (len(widths) - 1)}, "
                          f"got {image_size}")
    inputs = face_input(image_size)
    x = layers.Rescaling(1 / 255)(layers.Cropping2D(int(crop))(inputs) if crop else inputs)
    x = _conv_bn(x, widths[0])
    for stage, (width, count) in enumerate(zip(widths, blocks)):
        for i in range(count):
            x = residual_block(x, width, strides=2 if stage > 0 and i == 0 else 1, se_ratio=se_ratio)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(dropout)(x)
    model = keras.Model(inputs, classifier(x, num_classes), name="fernet")
    return load_local_weights(model, weights)
