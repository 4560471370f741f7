from __future__ import annotations

import sys

import numpy as np
import pytest

from ferkit.inference.tta import SHIFT, VIEWS, predict_flip, predict_tta, views


def test_views_are_flips_and_shifts():
    batch = np.random.default_rng(0).uniform(0, 255, (3, 48, 48, 1)).astype(np.float32)
    out = views(batch)
    assert len(out) == len(VIEWS) and all(v.shape == batch.shape for v in out)
    np.testing.assert_array_equal(out[0], batch)
    np.testing.assert_array_equal(out[1], batch[:, :, ::-1])
    # "left": content moved left by SHIFT pixels, the right edge repeated.
    np.testing.assert_array_equal(out[2][:, :, : 48 - SHIFT], batch[:, :, SHIFT:])
    np.testing.assert_array_equal(out[2][:, :, -1], batch[:, :, -1])
    np.testing.assert_array_equal(out[3][:, :, SHIFT:], batch[:, :, : 48 - SHIFT])  # "right"
    np.testing.assert_array_equal(out[3][:, :, 0], batch[:, :, 0])
    np.testing.assert_array_equal(out[4][:, : 48 - SHIFT], batch[:, SHIFT:])  # "up"
    np.testing.assert_array_equal(out[5][:, SHIFT:], batch[:, : 48 - SHIFT])  # "down"
    np.testing.assert_array_equal(out[5][:, 0], batch[:, 0])


@pytest.mark.parametrize("mirror_averaged", [False, True])
def test_predict_tta_is_one_call_and_averages(mirror_averaged):
    """All views in one call; a model that averages mirror images itself is not sent the mirror view."""
    calls = []

    def predict(x):  # the left half's brightness against the right's: a mirror view answers otherwise
        calls.append(len(x))
        left = x[:, :, : x.shape[2] // 2].mean(axis=(1, 2, 3))
        return np.stack([left, 255 - left], axis=1)

    batch = np.random.default_rng(1).uniform(0, 255, (5, 48, 48, 1)).astype(np.float32)
    probs = predict_tta(predict, batch, mirror_averaged)
    kept = [view for name, view in zip(VIEWS, views(batch)) if not (mirror_averaged and name == "flip")]
    assert calls == [5 * len(kept)] and len(kept) == len(VIEWS) - mirror_averaged and probs.shape == (5, 2)
    np.testing.assert_allclose(probs, np.mean([predict(v) for v in kept], axis=0), rtol=1e-6)
    identity_dropped = [view for name, view in zip(VIEWS, views(batch)) if name != VIEWS[0]]
    assert not np.allclose(probs, np.mean([predict(v) for v in identity_dropped], axis=0), rtol=1e-6)
    assert predict_tta(predict, batch[:0], mirror_averaged).shape == (0, 2)


def test_predict_flip_averages_the_face_and_its_mirror_image():
    def predict(x):  # left half's brightness vs right half's: a mirror image swaps them
        left, right = x[:, :, :24].mean(axis=(1, 2, 3)), x[:, :, 24:].mean(axis=(1, 2, 3))
        return np.stack([left, right], axis=1) / (left + right)[:, None]

    batch = np.random.default_rng(2).uniform(1, 255, (4, 48, 48, 1)).astype(np.float32)
    probs = predict_flip(predict, batch)
    assert not np.allclose(predict(batch), 0.5)
    np.testing.assert_allclose(probs, 0.5, rtol=1e-5)  # each half counted once on each side
    assert predict_flip(predict, batch[:0]).shape == (0, 2)


def test_predict_scores_bounds_tta_memory_and_shows_progress(capsys, monkeypatch):
    """A data set is scored a chunk at a time: TTA's views of it never sit in memory at once."""
    from types import SimpleNamespace

    from ferkit.inference.backends import CHUNK, predict_scores

    sizes = []

    def predict(x):
        sizes.append(len(x))
        return np.stack([x.mean(axis=(1, 2, 3)), 255 - x.mean(axis=(1, 2, 3))], axis=1)

    backend = SimpleNamespace(info=SimpleNamespace(mirror_averaged=True, classes=("a", "b")), predict=predict)
    batch = np.random.default_rng(3).uniform(0, 255, (2 * CHUNK + 7, 48, 48, 1)).astype(np.float32)
    probs = predict_scores(backend, batch, tta=True, progress=True)
    assert max(sizes) == CHUNK * (len(VIEWS) - 1) and len(sizes) == 3
    np.testing.assert_allclose(probs, predict_tta(predict, batch, mirror_averaged=True), rtol=1e-6)
    assert "scoring" not in capsys.readouterr().err  # a log file gets no bar's redraws
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)  # a terminal does
    predict_scores(backend, batch, tta=True, progress=True)
    assert "scoring with --tta" in capsys.readouterr().err
    np.testing.assert_array_equal(predict_scores(backend, batch), predict(batch))
