"""Image bytes to arrays, one way for training's data and inference's photos alike: a face trains as
it is later seen."""

from __future__ import annotations

import threading

import cv2
import numpy as np

from ferkit.data.preprocess import to_bgr

# What OpenCV's imdecode reads (the decoders sniff the content; the suffix only picks files in folders).
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".pbm", ".pgm", ".ppm", ".pnm",
                  ".tif", ".tiff", ".webp", ".avif", ".jp2"}


def decode_bgr(data: bytes) -> np.ndarray | None:
    """8-bit BGR from an encoded image, or None where OpenCV cannot decode it (cv2.error over its
    pixel limit). IMREAD_COLOR applies EXIF orientation (phone photos) and gives BGR for any input;
    alone, it would also make 8 bits of any depth its own way: 16-bit pixels shifted right by 8
    (12-bit data nearly black), a PFM's 0..1 floats cast to 0 and 1. Those go to `to_uint8`."""
    buffer = np.frombuffer(data, np.uint8)
    with opencv_quiet:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
        if image is not None and image.dtype.kind == "f" and data[:2] not in (b"PF", b"Pf"):
            image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)  # Radiance HDR: light, not 0..1; clipped at 1 as before
        if image is None:  # float TIFFs: IMREAD_COLOR refuses 32-bit samples; as a PIL image they work
            image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if (image is None or image.size == 0 or image.ndim not in (2, 3)
            or (image.ndim == 3 and image.shape[2] not in (1, 3, 4))):
        return None
    return to_bgr(image)  # NaN and infinities too, `to_uint8` judging the range on the finite pixels


class OpenCVQuiet:
    """OpenCV's own log silenced while it decodes: a corrupt file printed two `[ERROR]` lines of
    OpenCV's internals before ferkit's one-line message about it (and the server's log, one per bad
    upload). Counted, so that threads decoding at once (the server's workers) restore the level
    only when the last of them is done. The level is the process's: another thread's OpenCV
    messages (a camera's, YuNet's) are silenced while a decode runs too, a price for a clean log."""

    def __init__(self) -> None:
        self._lock, self._users, self._level = threading.Lock(), 0, 0

    def __enter__(self) -> None:
        with self._lock:
            if self._users == 0:
                self._level = cv2.utils.logging.getLogLevel()
                cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
            self._users += 1

    def __exit__(self, *exc_info) -> None:
        with self._lock:
            self._users -= 1
            if self._users == 0:
                cv2.utils.logging.setLogLevel(self._level)


opencv_quiet = OpenCVQuiet()
