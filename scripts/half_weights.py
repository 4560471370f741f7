"""Carry finished runs' weights as float16, half the bytes of model.keras, and rebuild them.

    python scripts/half_weights.py pack RUN [RUN ...]     # model.keras -> weights-f16.npz
    python scripts/half_weights.py unpack RUN [RUN ...]   # weights-f16.npz -> model.keras

A lent GPU machine sends back at most 64 MB per call, and five 2.8M-parameter networks in float32
come close to it: scripts/gpu_train.sh packs each finished run this way before archiving it, and
`unpack` rebuilds the network from the run's config.json as training saves it
(ferkit.training.networks.inference_model), with the weights back in float32. float16 keeps 11
bits of mantissa: each weight moves by at most 1 part in 2,048 (by at most 3e-8 below 6e-5, where
float16 has fewer bits), well under what int8 quantization of the bundled model then moves it
by. A run whose weights do not fit float16 (over 65,504) is left as it was, and so is one that
cannot be read: the others are still done, and the exit status says.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ferkit.models.loading import load_keras_model
from ferkit.runs import RunDir, replacing

HALF = "weights-f16.npz"


def pack(run: RunDir) -> None:
    model, _ = load_keras_model(run.path)
    weights = [w.astype(np.float16) if w.dtype == np.float32 else w for w in model.get_weights()]
    if not all(np.isfinite(w).all() for w in weights if w.dtype == np.float16):
        raise ValueError("weights beyond float16's range: model.keras kept")
    # model.keras goes only once `unpack` is known to rebuild the network: an ensemble's config.json,
    # or one with fields this version does not know, would leave the weights with nothing to load into.
    faces = np.random.default_rng(0).uniform(0, 255, (4, *model.input_shape[1:])).astype(np.float32)
    rebuilt = rebuild(run, weights)
    if not np.allclose(rebuilt(faces, training=False), model(faces, training=False), atol=1e-2):
        raise ValueError("the network rebuilt from its config.json answers otherwise: model.keras kept")
    with replacing(run.path / HALF) as part:  # whole or not at all: a call cut off mid-write keeps model.keras
        with open(part, "wb") as handle:
            np.savez(handle, *weights)
    run.keras_model.unlink()
    print(f"{run.path}: {len(weights)} arrays -> {HALF}")


def rebuild(run: RunDir, weights: list[np.ndarray]):
    """The run's network from its config.json, as training saves it, holding `weights` in float32."""
    from ferkit.training.config import TrainConfig
    from ferkit.training.networks import inference_model

    return inference_model(TrainConfig.from_dict(run.read_config()),
                           [w.astype(np.float32) if w.dtype == np.float16 else w for w in weights])


def unpack(run: RunDir) -> None:
    if not (run.path / HALF).is_file():
        raise ValueError(f"no {HALF} (a run stopped before it saved its model keeps checkpoints/ instead)")
    import keras

    with np.load(run.path / HALF) as saved:
        weights = [saved[f"arr_{i}"] for i in range(len(saved.files))]
    rebuild(run, weights).save(run.keras_model)
    print(f"{run.path}: {len(weights)} arrays -> {run.keras_model.name} (Keras {keras.__version__})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("action", choices=("pack", "unpack"))
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    failed = 0
    for path in args.runs:
        try:
            (pack if args.action == "pack" else unpack)(RunDir(path))
        except Exception as exc:  # one damaged run must not cost the others
            failed += 1
            print(f"{path}: not {args.action}ed: {exc}")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
