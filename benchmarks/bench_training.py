"""Training-side benchmark: FER2013 zip load time, training images/s per architecture, and the
speed-up of training a frozen backbone's head on cached features.

    python benchmarks/bench_training.py [--data ../shared/data/fer2013.zip] [--images 2048] [--only fernet ...]

Figures depend on the machine; this project's reference is a 2-core CPU. Not a test: it only prints.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import ferkit  # noqa: E402, F401  (before Keras: it turns on TensorFlow's oneDNN kernels, as `ferkit train` has them)
import keras  # noqa: E402
import numpy as np  # noqa: E402

from ferkit.data import load_fer  # noqa: E402
from ferkit.data.preprocess import to_model_input  # noqa: E402
from ferkit.models import create_model  # noqa: E402
from ferkit.training.config import TrainConfig  # noqa: E402
from ferkit.training.features import frozen_backbone  # noqa: E402
from ferkit.training.techniques import augmentation, with_augmentation  # noqa: E402

# (label, architecture, image size, bfloat16 compute, augmentation: None, "fused" (ferkit's) or
# "layers", model options)
CASES = [
    ("custom", "custom", 48, False, None, {}),
    ("fernet", "fernet", 48, False, None, {}),
    ("fernet bf16", "fernet", 48, True, None, {}),
    ("fernet bf16 + augment", "fernet", 48, True, "fused", {}),
    ("  same, 4 Keras layers", "fernet", 48, True, "layers", {}),
    ("  blocks 0,1,2,2 (default)", "fernet", 48, True, "fused", {"blocks": (0, 1, 2, 2)}),
    ("  same, float32", "fernet", 48, False, "fused", {"blocks": (0, 1, 2, 2)}),  # without native bf16
    ("  blocks 0,1,1,1, float32", "fernet", 48, False, "fused", {"blocks": (0, 1, 1, 1)}),
    ("  blocks 0,2,2,2", "fernet", 48, True, "fused", {"blocks": (0, 2, 2, 2)}),
    ("  same + SE 0.25", "fernet", 48, True, "fused", {"blocks": (0, 2, 2, 2), "se_ratio": 0.25}),
    ("  blocks 2,2,2,2", "fernet", 48, True, "fused", {"blocks": (2, 2, 2, 2)}),
    ("vgg19 (frozen)", "vgg19", 48, False, None, {}),
    ("mobilenetv2 (frozen)", "mobilenetv2", 96, False, None, {}),
]


def keras_layers_augmentation() -> keras.Sequential:
    """The same augmentation as Keras' four separate layers, for comparison with the fused one."""
    from keras import layers

    return keras.Sequential([layers.RandomFlip("horizontal"), layers.RandomTranslation(0.1, 0.1, fill_mode="reflect"),
                             layers.RandomRotation(10 / 360, fill_mode="reflect"),
                             layers.RandomZoom((-0.1, 0.1), fill_mode="reflect")])


class _StepTimes(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.times.append(time.perf_counter() - self.start)


def images_per_second(model: keras.Model, x: np.ndarray, y: np.ndarray, batch: int = 64, epochs: int = 2) -> float:
    """Steady-state training speed from the median step time.

    Whole-epoch timings misled here: on this machine the first step of some epochs stalls for
    seconds, which dominates a 2,000-face epoch but not a real 400-step one.
    """
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # warm-up/tracing
    steps = _StepTimes()
    model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[steps])
    return batch / float(np.median(steps.times))


def build(name: str, size: int, bf16: bool, **options) -> keras.Model:
    keras.mixed_precision.set_global_policy("mixed_bfloat16" if bf16 else "float32")
    try:
        return create_model(name, image_size=size, num_classes=7, weights="none", **options)
    finally:
        keras.mixed_precision.set_global_policy("float32")


def frozen_speedup(name: str, size: int, faces: np.ndarray, y: np.ndarray, epochs: int = 10) -> str:
    """Time for `epochs` epochs: full frozen model every epoch vs features once + head only."""
    x = to_model_input(faces, size)
    model = build(name, size, False)
    full = len(x) / images_per_second(model, x, y) * epochs
    backbone, head = frozen_backbone(model), model.get_layer("head")
    start = time.perf_counter()
    feats = backbone.predict(x, batch_size=256, verbose=0)
    extract = time.perf_counter() - start
    cached = extract + len(x) / images_per_second(head, feats, y) * epochs
    return (f"{name:<12} {epochs} epochs of {len(x)} faces: every epoch through the frozen backbone "
            f"{full:7.1f} s, features once ({extract:.1f} s) + head {cached:6.1f} s -> {full / cached:.1f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/fer2013.zip")
    parser.add_argument("--images", type=int, default=2048, help="faces per timing (default 2048)")
    parser.add_argument("--only", nargs="+", metavar="MODEL", help="time only these architectures")
    args = parser.parse_args()

    start = time.perf_counter()
    data = load_fer(args.data)
    print(f"load {args.data}: {len(data)} faces in {time.perf_counter() - start:.2f} s")

    rng = np.random.default_rng(0)
    pick = rng.choice(len(data), args.images, replace=False)
    faces, y = data.images[pick], data.labels[pick]
    print(f"\ntraining throughput ({args.images} faces, batch 64, {os.cpu_count()} CPU cores):")
    for label, name, size, bf16, augment, options in CASES:
        if args.only and name not in args.only:
            continue
        model = build(name, size, bf16, **options)
        augmenter = {None: None, "fused": augmentation(TrainConfig(augment=True)),
                     "layers": keras_layers_augmentation()}[augment]
        trainer = with_augmentation(model, augmenter)
        speed = images_per_second(trainer, to_model_input(faces, size), y)
        trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
        print(f"  {label:<22} {size:>3} px  {model.count_params():>10,} params "
              f"({trainable:,} trainable)  {speed:7.0f} img/s")
    frozen = [(name, size) for name, size in (("vgg19", 48), ("mobilenetv2", 96))
              if not args.only or name in args.only]
    if frozen:
        print("\nfrozen-feature training vs the seed's frozen backbone every epoch:")
    for name, size in frozen:
        print("  " + frozen_speedup(name, size, faces, y))


if __name__ == "__main__":
    main()
