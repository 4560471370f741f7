"""Face preprocessing shared by training and inference, so a face is seen the same way by both.

The model input is a batch of grayscale squares, float32 in 0..255, shape (N, size, size, 1).
Scaling to the range a network wants happens inside each model, so exported models and every
caller feed the same raw pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ferkit.errors import FerkitError
from ferkit.hardware import free_memory

FER_SIZE = 48  # FER2013's native face size


def to_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 pixels from any numeric array. 16-bit images (what OpenCV reads from 16-bit PNG and
    TIFF files as uint16, and older Pillow as 32-bit ints) are scaled down by the bits their pixels
    use: a camera's 10- or 12-bit data stored in 16 bits (0..4095), or 8-bit values saved as 16-bit,
    came out nearly black at 0..65535, and the detector found no face. Floats with no
    value over 2 are the 0..1 range (skimage's and PIL-to-float convention) with the overshoot that
    cubic resizing or a highlight leaves, clipped: read as 0..255 such an image was all black and
    showed no face. Anything else is 0..255. The range is judged on finite values: one NaN pixel
    made the whole image read as 0..255, and black; NaN is then black, infinities the range's ends."""
    if image.dtype == np.uint8:
        return image
    if image.size == 0:
        return image.astype(np.uint8)
    if np.issubdtype(image.dtype, np.integer) and (image.dtype == np.uint16 or image.max() > 255):
        image = image if image.dtype == np.uint16 else np.clip(image, 0, 65535).astype(np.uint16)
        top = (1 << max(int(image.max()).bit_length(), 8)) - 1  # 4095 for 12-bit data, 65535 for 16
        # 65535 -> 255, rounding down like a shift; through a table, which allocates the 8-bit result
        # alone: the 32-bit arithmetic took four copies, 2 GB for a 50-megapixel 16-bit photo
        table = np.minimum(np.arange(65536, dtype=np.uint32) * 255 // top, 255).astype(np.uint8)
        return table[image]
    unit = image.dtype == bool
    if np.issubdtype(image.dtype, np.floating):
        finite = image[np.isfinite(image)]
        unit = not finite.size or finite.max() <= 2.0
        image = np.nan_to_num(image, nan=0.0, posinf=1.0 if unit else 255.0, neginf=0.0)
    return np.clip(image * 255.0 if unit else image, 0, 255).astype(np.uint8)


def to_gray(image: np.ndarray) -> np.ndarray:
    """Grayscale uint8 from a gray, BGR or BGRA image (OpenCV's channel order)."""
    image = to_uint8(image)
    if image.ndim == 2:
        return image
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    raise ValueError(f"expected a gray, BGR or BGRA image, got shape {image.shape}")


def to_bgr(image: np.ndarray) -> np.ndarray:
    """3-channel uint8 BGR from a gray, (H, W, 1), BGR or BGRA image of any numeric type, as
    `to_gray` takes them; a uint8 BGR image is returned as is."""
    image = to_uint8(image)
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.shape[2] == 4 else image


def squared(gray: np.ndarray) -> np.ndarray:
    """A face crop made square rather than stretched, as `crop_face` makes detected faces square
    (it takes the pixels around the box; a crop has none, so its edge pixels are repeated): the
    longer side kept, the shorter one widened about the centre (benchmarks/bench_crop.py)."""
    height, width = gray.shape[:2]
    if height == width:
        return gray
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return cv2.copyMakeBorder(gray, top, side - height - top, left, side - width - left, cv2.BORDER_REPLICATE)


def resize_square(gray: np.ndarray, size: int) -> np.ndarray:
    """A face at size x size, for training and inference alike: `squared`, then resized, with area
    interpolation when shrinking (no aliasing), linear when growing."""
    if gray.shape[:2] == (size, size):
        return gray
    if max(gray.shape[:2]) > 4 * size:  # squared at full size, a 40000x40 strip became 40000x40000 (1.6 GB)
        scale = 4 * size / max(gray.shape[:2])
        gray = cv2.resize(gray, (max(1, round(gray.shape[1] * scale)), max(1, round(gray.shape[0] * scale))),
                          interpolation=cv2.INTER_AREA)
    gray = squared(gray)
    shrinking = gray.shape[0] > size or gray.shape[1] > size
    interp = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(gray, (size, size), interpolation=interp)


def to_model_input(faces: Sequence[np.ndarray] | np.ndarray, size: int) -> np.ndarray:
    """Stack face crops (any size, gray or colour; made square first) into the model's
    (N, size, size, 1) float32 batch."""
    if len(faces) == 0:
        return np.zeros((0, size, size, 1), np.float32)
    check_fits_memory(len(faces), size)
    batch = np.stack([resize_square(to_gray(np.asarray(f)), size) for f in faces])
    return batch.astype(np.float32)[..., None]


def check_fits_memory(count: int, size: int, advice: str = "") -> None:
    """Many faces at a large size (a training set at --image-size 1000) are refused in one line, not
    left to a MemoryError or the kernel's OOM killer minutes later. Reading the free memory costs a
    file read, so small batches (a video's faces) are not checked. `advice`: what the caller can do."""
    need = count * size * size * 5  # the uint8 faces stacked, then their float32 copy
    free = free_memory() if need > 2 ** 28 else None
    if free is not None and need > free:
        raise FerkitError(f"{count} faces of {size}x{size} px take {need / 2 ** 30:.1f} GiB as the model's input, "
                          f"more than the {free / 2 ** 30:.1f} GiB of memory free{advice}")


def eye_angle(landmarks: np.ndarray) -> float:
    """Degrees to rotate by so that the eyes are level (YuNet order: right eye, left eye, ...)."""
    (rx, ry), (lx, ly) = landmarks[0], landmarks[1]
    return float(np.degrees(np.arctan2(ly - ry, lx - rx)))


FACE_MARGIN = 0.1  # a tenth of the box beyond each side: the best of 0-0.3 in benchmarks/bench_crop.py


def input_in_words(size: int) -> str:
    """What every ferkit model takes (to_model_input, crop_face), for those who feed an exported
    one without ferkit: fed faces scaled to 0-1, the usual convention, the bundled model agreed
    with ferkit on 1 of 14 faces, without an error (an app developer's trial)."""
    return (f"float32, shape (batch, {size}, {size}, 1): grayscale faces (OpenCV's BGR2GRAY, taken before cropping), "
            f"pixel values 0-255, not scaled; each a square crop centred on the face's box, {FACE_MARGIN:.0%} of the "
            f"box's side beyond each edge, turned to level the eyes, resized to {size} px (INTER_AREA when shrinking)")


def crop_face(image: np.ndarray, box: tuple[int, int, int, int], margin: float,
              angle: float = 0.0) -> np.ndarray:
    """A square crop centred on a detector box, `margin` of its size added on every side,
    rotated by `angle` degrees about its centre (see eye_angle) so that tilted faces come out upright.

    One affine warp computes only the output pixels, so a crop from a large photo stays cheap;
    parts outside the image replicate the border, so faces at the edge keep their shape.
    """
    x, y, w, h = box
    side = max(int(round(max(w, h) * (1 + 2 * margin))), 1)
    # Only the part of the image that any rotation of the crop can touch is warped: OpenCV's warp
    # refuses images 32,767 px or more on a side (a stitched panorama, a long screenshot).
    reach = int(np.ceil(side * 0.7072)) + 2  # half the square's diagonal, and a pixel for interpolation
    (left, right), (top, bottom) = (_reach(x + w / 2, reach, image.shape[1]), _reach(y + h / 2, reach, image.shape[0]))
    part = image[top:bottom, left:right]
    centre = (x + w / 2 - left, y + h / 2 - top)
    matrix = cv2.getRotationMatrix2D(centre, angle, 1.0)
    matrix[:, 2] += (side / 2 - centre[0], side / 2 - centre[1])
    return cv2.warpAffine(part, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def _reach(centre: float, reach: int, length: int) -> tuple[int, int]:
    """The pixels within `reach` of `centre` along a side of `length`, at least the nearest one."""
    start = min(max(int(centre) - reach, 0), length - 1)
    return start, max(int(centre) + reach + 1, start + 1)
