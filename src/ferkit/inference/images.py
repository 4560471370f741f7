"""Turning whatever a user passes (path, numpy array, PIL image) into an OpenCV BGR array."""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from ferkit.data.preprocess import to_bgr, to_uint8
from ferkit.data.decoding import decode_bgr
from ferkit.errors import FerkitError

log = logging.getLogger("ferkit")


def is_pil(image: Any) -> bool:
    """A PIL image (RGB), told without importing PIL."""
    return hasattr(image, "convert") and hasattr(image, "size")


def load_image(image: Any, rgb: bool = False) -> np.ndarray:
    """BGR (or gray) uint8 array from a file path, an http(s) URL, a `data:image/...;base64,` URL (what
    browsers and JSON APIs pass), bytes, an open file or other object with `.read()`, a numpy array or a PIL image.

    Numpy arrays are taken as BGR, OpenCV's order, unless `rgb=True`; PIL images are RGB.
    """
    if is_data_url(image):
        return decode_image(base64_image(image), "the data URL")
    if is_url(image):
        return decode_image(download(image), image)
    if isinstance(image, (str, os.PathLike)):
        return read_image_file(Path(image))
    if isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image(bytes(image), "image bytes")
    if hasattr(image, "read") and not hasattr(image, "convert"):  # a file opened "rb", io.BytesIO
        return decode_image(_read_stream(image), str(getattr(image, "name", "the file object")))
    if image is None:  # most often what cv2.imread gave for a file it cannot read
        raise FerkitError("not an image: None (cv2.imread returns None for a file it cannot read: pass the path "
                          "itself)")
    if isinstance(image, (list, tuple)) and image and isinstance(image[0], (str, os.PathLike, bytes)):
        raise FerkitError(f"one image, not a list of {len(image)}: call it for each (classify takes a list of "
                          "face crops)")  # had said "not an image array: shape (1,)"
    if is_pil(image):
        image, rgb = _from_pil(image), True
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[2] == 2:  # gray and alpha (imageio's LA PNGs): the gray
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or array.size == 0 or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise FerkitError(f"not an image array: shape {array.shape}{_shape_hint(array.shape)}")
    if array.dtype.kind not in "biuf":  # complex lost its imaginary part in silence; objects, strings a TypeError
        raise FerkitError(f"not an image array: its values are {array.dtype}, not real numbers (uint8, uint16, float)")
    array = to_uint8(array)
    if rgb and array.ndim == 3 and array.shape[2] in (3, 4):
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR if array.shape[2] == 3 else cv2.COLOR_RGBA2BGRA)
    return array


def _shape_hint(shape: tuple[int, ...]) -> str:
    if len(shape) == 4:
        return "; that is a batch of images: detect takes one image, so call it for each (classify takes face crops)"
    if len(shape) == 3 and shape[0] in (1, 3, 4) and shape[2] > 4:
        return "; channels first? give array.transpose(1, 2, 0), height x width x channels"
    return "; an image is height x width, or height x width x 1, 3 or 4 channels"


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


MAX_DOWNLOAD_MB = 50  # a photo is a few MB; more is not an image worth waiting for


def is_url(image: Any) -> bool:
    return isinstance(image, str) and image[:8].lower().startswith(("http://", "https://"))


def is_data_url(image: Any) -> bool:
    return isinstance(image, str) and image[:5].lower() == "data:"


def source_name(source: Path | str) -> str:
    """How results and messages name an input: a data URL by its type and length, not its text
    (thousands of characters in every line, row and error)."""
    if is_data_url(source):  # its header printable and tab-free: the lines are tab-separated
        head = "".join(c for c in source.split(",", 1)[0][:80] if c.isprintable() and c != "\t")
        return f"{head},... ({len(source):,} characters)"
    return str(source)


def download(url: str, timeout: float = 30) -> bytes:
    """An image's bytes from the web, within MAX_DOWNLOAD_MB and `timeout` seconds a read, or a
    one-line error that says why not (the server's status, no network, a bad address, a page that
    is no image, a body cut short)."""
    try:
        return _fetch(url, timeout)
    except FerkitError as exc:
        raise FerkitError(f"cannot download {url}: {exc}") from None


def _fetch(url: str, timeout: float) -> bytes:
    import http.client
    import urllib.error
    import urllib.request
    from urllib.parse import quote

    from ferkit import __version__

    limit = int(MAX_DOWNLOAD_MB * 1024 * 1024)
    try:
        # Spaces and non-ASCII letters as a browser sends them; what is %-encoded already stays
        request = urllib.request.Request(quote(url, safe=":/?#[]@!$&'()*+,;=%~"),
                                         headers={"User-Agent": f"ferkit/{__version__}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            kind = response.headers.get_content_type()
            declared = response.headers.get("Content-Length", "")
            if kind.startswith("text/"):
                raise FerkitError(f"the server sent {kind}, not an image")
            if declared.isdecimal() and int(declared) > limit:
                raise FerkitError(f"over {MAX_DOWNLOAD_MB} MB")
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise FerkitError(f"HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        # no network, no such host, a timeout, a server that speaks no HTTP, a body cut short
        reason = getattr(exc, "reason", None) or exc
        raise FerkitError(" ".join(str(reason).split()) or type(exc).__name__) from None
    if len(data) > limit:
        raise FerkitError(f"over {MAX_DOWNLOAD_MB} MB")
    if declared.isdecimal() and len(data) < int(declared):
        raise FerkitError(f"the connection ended after {len(data):,} of {int(declared):,} bytes")
    return data


def _read_stream(stream: Any) -> bytes:
    """Its bytes from where it stands, and back there after when it can seek: the same BytesIO can
    be detected and then annotated."""
    import inspect

    start = stream.tell() if getattr(stream, "seekable", lambda: False)() else None
    data = stream.read()
    if inspect.iscoroutine(data):  # an async upload (Starlette's UploadFile)
        data.close()
        raise FerkitError("the file object reads asynchronously: pass `await upload.read()`, its bytes")
    if not isinstance(data, (bytes, bytearray)):
        raise FerkitError("the file object gave text, not bytes: open the image in binary mode ('rb')")
    if not data:  # a pipe or socket cannot go back: the commonest cause is reading it a second time
        raise FerkitError("the file object gave no bytes: it is empty, or was read to its end already "
                          "(a stream that cannot seek is read once: pass its bytes to use them twice)")
    if start is not None:
        stream.seek(start)
    return bytes(data)


def base64_image(text: str) -> bytes:
    """An image's bytes from base64 text, bare or as a data URL (data:image/jpeg;base64,...)."""
    import base64
    import binascii

    if text[:5].lower() == "data:":
        header, comma, text = text.partition(",")
        if not comma or not header.lower().endswith(";base64"):
            raise FerkitError("a data URL image is data:image/<type>;base64,<the image's bytes in base64>")
    text = "".join(text.split())  # wrapped lines too, as `base64` writes
    if is_url(text):
        raise FerkitError("an http(s) URL is not an image's base64: send the image itself")
    try:  # the URL- and file-name-safe alphabet (- and _) and unpadded text too, as JavaScript's encoders give
        return base64.b64decode(text.replace("-", "+").replace("_", "/") + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise FerkitError("the image is not valid base64") from None


def read_image_file(path: Path) -> np.ndarray:
    name = str(path)
    try:
        found, refused = path.is_file(), None
    except OSError as exc:  # a name the file system refuses outright (too long, for one)
        found, refused = False, exc
    if not found and len(name) > 1024:  # base64 text, most likely, not a deep path: not printed whole
        raise FerkitError(f"image not found: a path of {len(name):,} characters ({name[:40]}...); an image "
                          "in base64 needs the data URL form, data:image/jpeg;base64,...")
    if refused is not None:
        raise FerkitError(f"image not found: {name[:200]} ({refused.strerror or refused})")
    if not found and path.is_dir():
        raise FerkitError(f"{path} is a folder, not an image: `ferkit predict` searches folders; in Python, "
                          "give one image file")
    if not found and not path.exists():
        raise FerkitError(f"image not found: {path}")
    try:  # a file, or a pipe (`ferkit predict <(curl ...)`) or device
        data = path.read_bytes()
    except OSError as exc:  # permissions, a file gone mid-run: one bad file, not the whole batch
        raise FerkitError(f"cannot read {path}: {exc.strerror or exc}") from None
    return decode_image(data, str(path))


# A progressive JPEG decodes scan by scan, each a pass over the whole image: an 81 KB file of 2,000
# repeated scans took 12 s to decode at 3000x3000 here, and scans cost 23 bytes each. libjpeg-turbo
# advises a cap (djpeg -maxscans); photos have 1 scan (baseline) or about 10 (progressive).
MAX_JPEG_SCANS = 100


def check_jpeg_scans(data: bytes, name: str) -> None:
    """Refuse a JPEG whose scans would take minutes to decode."""
    if data[:2] == b"\xff\xd8":
        scans = jpeg_scans(data)
        if scans > MAX_JPEG_SCANS:
            raise FerkitError(f"cannot read {name}: a JPEG of {scans} scans, over the {MAX_JPEG_SCANS} ferkit "
                              "decodes (photos have at most about 10): made to take minutes to decode, or damaged")


# The next marker: an FF byte followed by neither a stuffed 00, a restart (both inside entropy-coded
# data) nor a fill FF. What lies between is skipped, stray bytes too, as libjpeg skips them.
_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
MAX_JPEG_SEGMENTS = 10_000  # photos have tens; past this the walk stops and the bytes are counted


def jpeg_scans(data: bytes) -> int:
    """The start-of-scan markers of a JPEG's own image, found by walking its segments up to its
    end-of-image marker. Counting FF DA bytes in the whole file had refused phones' motion photos:
    the MP4 after the picture holds one in every 64 KB or so (126 in an 8 MB clip)."""
    scans, pos = 0, 2
    for _ in range(MAX_JPEG_SEGMENTS):
        found = _MARKER.search(data, pos)
        if found is None:
            return scans
        marker, pos = data[found.start() + 1], found.start() + 2
        if marker == 0xD9:  # the end of the image
            return scans
        if marker != 0x01:  # TEM stands alone; every other segment says its length
            pos += int.from_bytes(data[pos:pos + 2], "big")
        scans += marker == 0xDA  # its entropy-coded data is skipped by the next search
    return scans + data.count(b"\xff\xda", pos)


def decode_image(data: bytes, name: str) -> np.ndarray:
    if not data:
        raise FerkitError(f"cannot read {name}: it is empty (0 bytes)")
    check_jpeg_scans(data, name)
    if _brands(data) & set(AVIF_BRANDS):
        image = _upright_by_pil(data)
        if image is not None:
            return image
    try:
        image = decode_bgr(data)
    except cv2.error as exc:  # OpenCV asserts instead of returning None for images over its pixel limit
        if exc.code == cv2.Error.StsNoMem:  # under it, but more than the memory free (an edge box's)
            raise FerkitError(f"cannot read {name}: not enough memory free to decode it") from None
        raise FerkitError(f"cannot read {name}: larger than OpenCV decodes (2^30 pixels)") from None
    if image is None:
        raise FerkitError(f"cannot read {name}: {unreadable_because(data)}")
    frames = _frames(data)
    if frames > 1:  # OpenCV's video reader takes GIF and APNG, not an animated WebP
        log.warning("%s: an animated image of %d frames; only the first is read%s", name, frames,
                    "" if data[:4] == b"RIFF" else " (ferkit video reads them all)")
    return image


def _frames(data: bytes) -> int:
    """How many frames an image that can be animated holds (GIF, WebP, APNG), through Pillow, which
    matplotlib brings: OpenCV decodes the first alone, and the rest had gone unread without a word."""
    animated = data[:4] == b"GIF8" or (data[:4] == b"RIFF" and data[8:12] == b"WEBP") or _apng(data)
    if not animated:
        return 1
    try:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            return int(getattr(image, "n_frames", 1))
    except Exception:  # OpenCV read the first frame: a count Pillow cannot give changes nothing
        return 1


def _apng(data: bytes) -> bool:
    """A PNG with an animation control chunk (acTL), which comes before its first image data (IDAT)
    but may come after a colour profile of any size."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    at = 8
    while at + 8 <= len(data):
        kind = data[at + 4:at + 8]
        if kind in (b"acTL", b"IDAT"):
            return kind == b"acTL"
        at += 12 + int.from_bytes(data[at:at + 4], "big")  # length, type, data, CRC
    return False


# ISO media files (the box "ftyp" at byte 4) say what they hold by a brand: photos or video
AVIF_BRANDS = (b"avif", b"avis")
HEIF_BRANDS = (b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1")


def _brands(data: bytes) -> set[bytes]:
    """The major brand and the compatible ones that follow it (an AVIF may be `mif1` first)."""
    if data[4:8] != b"ftyp":
        return set()
    end = min(int.from_bytes(data[:4], "big"), len(data), 256)
    return {data[8:12]} | {data[i:i + 4] for i in range(16, end - 3, 4)}


def _upright_by_pil(data: bytes) -> np.ndarray | None:
    """An AVIF photo through Pillow, turned upright: OpenCV ignores AVIF's orientation (its irot and
    imir boxes, which Pillow reads as EXIF's), and gave phone photos sideways. None where this
    Pillow cannot read it, for OpenCV to try."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return to_bgr(load_image(image))
    except Exception:  # Pillow's format plugins raise more than OSError
        return None


def unreadable_because(data: bytes) -> str:
    """Why bytes that OpenCV does not decode are no image ferkit reads, and what to do instead."""
    brands = _brands(data)
    if brands & set(AVIF_BRANDS):
        return "an AVIF photo that neither OpenCV nor Pillow here decodes: convert it to JPEG, or it is corrupt"
    if brands & set(HEIF_BRANDS):
        return ("a HEIC/HEIF photo, which ferkit cannot decode: convert it to JPEG, or open it with "
                "pillow-heif and pass the PIL image")
    if brands or data[:4] == b"\x1aE\xdf\xa3" or (data[:4] == b"RIFF" and data[8:12] == b"AVI "):
        return "a video, not an image: `ferkit video` (or EmotionRecognizer.video) reads videos"
    return "not an image, or a corrupt one"
