"""Turning whatever a user passes (path, numpy array, PIL image) into an OpenCV BGR array."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferkit.data.preprocess import to_uint8
from ferkit.data.sources import IMAGE_SUFFIXES, is_os_metadata
from ferkit.errors import FerkitError

log = logging.getLogger("ferkit")


def load_image(image: Any, rgb: bool = False) -> np.ndarray:
    """BGR (or gray) uint8 array from a file path, bytes, numpy array or PIL image.

    Numpy arrays are taken as BGR, OpenCV's order, unless `rgb=True`; PIL images are RGB.
    """
    if isinstance(image, (str, Path)):
        return read_image_file(Path(image))
    if isinstance(image, (bytes, bytearray)):
        return decode_image(bytes(image), "image bytes")
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image, without importing PIL
        image, rgb = _from_pil(image), True
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.size == 0 or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise FerkitError(f"not an image array: shape {array.shape}")
    array = to_uint8(array)
    if rgb and array.ndim == 3 and array.shape[2] in (3, 4):
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return array


def _from_pil(image: Any) -> np.ndarray:
    """RGB (or gray, for 16-bit and float modes) array, turned upright as its EXIF says, like a file
    read by path; 16-bit and float pixels keep their range, which convert("RGB") would clip."""
    from PIL import ImageOps  # a PIL image was passed, so PIL is there

    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)  # native byte order whatever the mode's
    if image.mode == "I":  # 32-bit integers: older Pillow reads 16-bit PNGs so
        array = np.asarray(image)
        return np.clip(array, 0, 65535).astype(np.uint16) if array.max() > 255 else array
    if image.mode == "F":
        return np.asarray(image)
    return np.asarray(image.convert("RGB"))


def read_image_file(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FerkitError(f"image not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:  # permissions, a file gone mid-run: one bad file, not the whole batch
        raise FerkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_image(data, str(path))


def decode_image(data: bytes, name: str) -> np.ndarray:
    # IMREAD_COLOR applies EXIF orientation (phone photos) and gives 8-bit BGR for any input.
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
        if image is None and data:  # float TIFFs: IMREAD_COLOR refuses 32-bit samples; as a PIL image they work
            image = _as_8_bit_bgr(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
    except cv2.error:  # OpenCV asserts instead of returning None for images over its pixel limit
        raise FerkitError(f"cannot read {name}: larger than OpenCV decodes (2^30 pixels)") from None
    if image is None:
        raise FerkitError(f"cannot read {name}: not an image or corrupt")
    return image


def find_images(paths: list[str | Path]) -> list[Path]:
    """Files as given, and folders searched recursively for image files, in a stable order."""
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                            and not is_os_metadata(p.relative_to(path).parts))
            if not inside:  # said, not skipped in silence: a wrong folder among several is easy to miss
                log.warning("no image files in %s (looked for %s)", path,
                            " ".join(sorted(IMAGE_SUFFIXES)))
            found += inside
        else:
            found.append(path)
    return found


def _as_8_bit_bgr(image: np.ndarray | None) -> np.ndarray | None:
    """8-bit BGR from what IMREAD_UNCHANGED read (gray, BGR or BGRA, any depth), or None."""
    if image is None or image.size == 0 or image.ndim not in (2, 3):
        return None
    if image.ndim == 3 and image.shape[2] not in (1, 3, 4):
        return None
    image = to_uint8(np.nan_to_num(image))
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR) if image.shape[2] == 4 else image
