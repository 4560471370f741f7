"""The fused face augmentation (one random affine warp per face)."""

from __future__ import annotations

import keras
import numpy as np

from ferkit.data.preprocess import to_model_input

def _gradient_faces(n: int = 16) -> np.ndarray:
    """Faces whose left and right halves differ, so a flip is visible."""
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.float32), (48, 1))
    return np.repeat(ramp[None, :, :, None], n, axis=0)


def test_face_affine_flip_only_mirrors_or_keeps_each_face():
    from ferkit.training.augment import RandomFaceAffine

    faces = _gradient_faces()
    layer = RandomFaceAffine(rotation=0, shift=0, zoom=0, flip=True, seed=3)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))
    kept = np.all(np.abs(out - faces) < 1e-3, axis=(1, 2, 3))
    mirrored = np.all(np.abs(out - faces[:, :, ::-1]) < 1e-3, axis=(1, 2, 3))
    assert np.all(kept | mirrored) and kept.any() and mirrored.any()


def test_face_affine_is_identity_at_inference_and_random_in_training():
    from ferkit.training.augment import RandomFaceAffine

    faces = to_model_input(np.random.default_rng(0).integers(0, 255, (8, 48, 48), dtype=np.uint8), 48)
    layer = RandomFaceAffine(seed=1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(faces)), faces)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))
    assert out.shape == faces.shape and out.min() >= 0 and out.max() <= 255
    changed = np.abs(out - faces).mean(axis=(1, 2, 3)) > 1
    assert changed.all()


def test_face_affine_shift_moves_content_by_at_most_the_limit():
    from ferkit.training.augment import RandomFaceAffine

    faces = np.zeros((32, 48, 48, 1), np.float32)
    faces[:, 20:28, 20:28] = 255  # a bright square in the middle
    layer = RandomFaceAffine(rotation=0, shift=0.1, zoom=0, flip=False, seed=2)
    out = keras.ops.convert_to_numpy(layer(faces, training=True))[..., 0]
    rows = np.array([np.nonzero(o > 127)[0].mean() for o in out])
    cols = np.array([np.nonzero(o > 127)[1].mean() for o in out])
    assert np.abs(rows - 23.5).max() <= 4.8 + 0.5 and np.abs(cols - 23.5).max() <= 4.8 + 0.5
    assert np.abs(cols - 23.5).max() > 1  # it does move
