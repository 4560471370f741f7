"""Face preprocessing shared by training and inference, so a face is seen the same way by both.

The model input is a batch of grayscale squares, float32 in 0..255, shape (N, size, size, 1).
Scaling to the range a network wants happens inside each model, so exported models and every
caller feed the same raw pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

FER_SIZE = 48  # FER2013's native face size


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 from a gray, BGR or BGRA image (OpenCV's channel order)."""
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size: area interpolation when shrinking (no aliasing), linear when growing."""
    if gray.shape[:2] == (size, size):
        return gray
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def to_model_input(faces: Sequence[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """Stack face crops (any size, gray or colour) into the model's (N, size, size, 1) float32 batch."""
    if len(faces) == 0:
        return np.zeros((0, size, size, 1), np.float32)
    batch = np.stack([resize_square(to_gray(np.asarray(f)), size) for f in faces])
    return batch.astype(np.float32)[..., None]


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float) -> np.ndarray:
    """A square crop centred on a detector box, `margin` of its size added on every side.

    Out-of-image parts are filled by replicating the border, so faces at the edge keep their shape.
    """
    x, y, w, h = box
    side = max(w, h) * (1 + 2 * margin)
    cx, cy = x + w / 2, y + h / 2
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    x1, y1 = x0 + int(round(side)), y0 + int(round(side))
    H, W = image.shape[:2]
    pad = max(0, -x0, -y0, x1 - W, y1 - H)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return image[y0 + pad:y1 + pad, x0 + pad:x1 + pad]
