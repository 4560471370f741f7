"""Reading an upload as it arrives: a raw body, a multipart field `file` or base64 in JSON, capped in
size and time, and its image's header checked before anything decodes it. Each failure is an
HTTPException with the 4xx the API documents."""

from __future__ import annotations

import difflib
import io
import re

import anyio
from fastapi import HTTPException, Request

from ferkit.errors import FerkitError
from ferkit.inference.images import base64_image, check_jpeg_scans, unreadable_because

MAX_PIXELS = 50_000_000  # a 20000x20000 upload is refused from its header, never decoded
IMAGE_TYPES = ("image/", "application/octet-stream")
UPLOAD_SECONDS = 120  # the whole body must arrive within this (10 MB at under 1 Mbit/s): 408 after


async def read_upload(request: Request, max_bytes: int) -> bytes:
    """The image bytes, from a raw body, a multipart field `file` or a JSON body's base64 `image`, within
    the size cap and UPLOAD_SECONDS."""
    try:
        with anyio.fail_after(UPLOAD_SECONDS):
            return await _read_capped(request, max_bytes)
    except TimeoutError:
        raise HTTPException(408, f"the upload did not arrive within {UPLOAD_SECONDS:g} s") from None


async def _read_capped(request: Request, max_bytes: int) -> bytes:
    too_big = HTTPException(413, f"upload over the {max_bytes / (1024 * 1024):g} MB limit")
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    multipart, as_json = kind == "multipart/form-data", kind == "application/json"
    if not (multipart or as_json or kind.startswith(IMAGE_TYPES) or not kind):
        raise HTTPException(415, f"unsupported content type {kind!r}: send an image, multipart/form-data or "
                                 "JSON with the image in base64")
    # Room for the multipart framing; base64 takes 4 bytes for every 3, and a tenth more covers
    # line breaks every 76 (MIME's) and JSON's escaped slashes. The image itself is capped below.
    cap = max_bytes * 4 // 3 * 11 // 10 + 4096 if as_json else max_bytes + (64 * 1024 if multipart else 0)
    declared = request.headers.get("content-length", "")
    if declared.isdecimal() and int(declared) > cap:
        raise too_big
    body = bytearray()
    async for chunk in request.stream():  # counted as it arrives: chunked uploads are capped too
        body += chunk
        if len(body) > cap:
            raise too_big
    data = bytes(body)
    if as_json:  # parsing and decoding 14 MB of base64 held up every other request on the event loop
        data = await anyio.to_thread.run_sync(_from_json, data)
    if multipart:
        data = await _multipart_file(request, data)
    if len(data) > max_bytes:
        raise too_big
    if not data:
        raise HTTPException(400, "empty upload: send an image")
    return data


_FILE_PART = re.compile(rb'(?im)^content-disposition:[^\r\n]*;\s*name="?file"?\s*(;|\r?$)')


async def _multipart_file(request: Request, body: bytes) -> bytes:
    """The one image in the form's field `file`. The form is closed on the way out: Starlette spools
    an upload over 1 MB to a temporary file, which would otherwise wait for the garbage collector."""
    request._body = body  # Starlette parses the form from the body already read
    # A part as large as the upload limit: Starlette's own 1 MB cap per text part would otherwise
    # answer an image sent as text (`-F file=<photo.jpg`) with its message, not the one below
    async with request.form(max_part_size=len(body) + 1) as form:
        files = form.getlist("file")
        if len(files) > 1:  # answering for the first alone would look like the others had no face
            raise HTTPException(400, f"{len(files)} files in the field 'file': send one image per request")
        upload = files[0] if files else None
        if isinstance(upload, str):
            raise HTTPException(400, "the field 'file' is text, not a file: send the image as a file "
                                     "(curl -F file=@photo.jpg)")
        if upload is None and _FILE_PART.search(body):  # the part began, and its closing boundary never came
            raise HTTPException(400, "the multipart upload is cut short: its field 'file' never ends (a "
                                     "dropped connection, or a client that sent too little)")
        if upload is None:
            raise HTTPException(400, "multipart upload needs an image in the field 'file'")
        _no_option_beside(form.keys(), "form")
        return await upload.read()


def _from_json(body: bytes) -> bytes:
    """The image of a JSON body {"image": "<base64>"}, or a data URL as a browser's FileReader gives it."""
    import json

    # Base64 and data URLs hold no brackets: a body of millions of [] or {} (some 24 times its size as
    # Python objects, parsed holding the GIL) is refused before it is parsed
    if body.count(b"[") + body.count(b"{") > 64:
        raise HTTPException(400, 'a JSON body is {"image": "<the image in base64, or a data: URL>"}')
    try:
        fields = json.loads(body)
        image = fields.get("image")
    except (ValueError, AttributeError, RecursionError):  # RecursionError: [[[[... nested too deep
        raise HTTPException(400, 'a JSON body is {"image": "<the image in base64, or a data: URL>"}') from None
    if not isinstance(image, str):
        raise HTTPException(400, 'a JSON body needs "image": the image in base64, or a data: URL')
    _no_option_beside(fields, "JSON body")
    try:
        return base64_image(image)
    except FerkitError as exc:
        raise HTTPException(400, str(exc)) from None


def like_annotated(names) -> list[str]:
    """The names that are, or are likely meant as, the one option (`annotated`)."""
    return [name for name in names if difflib.get_close_matches(str(name).lower(), ["annotated"], cutoff=0.75)]


def _no_option_beside(fields, where: str) -> None:
    """{"image": ..., "annotated": true} had answered JSON where a PNG was asked for, without a word, as a
    misspelt query parameter had: the option is a query parameter. Other fields (a form's CSRF token or
    button, a client's file name) are none of ferkit's, and pass."""
    if options := like_annotated(fields):
        raise HTTPException(422, f"the {where} holds the image; {options[0]!r} goes in the URL's query "
                                 "(?annotated=true)")


# At most 9 digits a side: int() refuses over 4,300, which a crafted header had made a 500
_PFM = re.compile(rb"\AP[Ff]\s+(\d{1,9})\s+(\d{1,9})\s")
_HDR = re.compile(rb"\A#\?(?:RADIANCE|RGBE)\n(?:[^\n]*\n)*?\n[-+]([XY]) (\d{1,9}) [-+][XY] (\d{1,9})\n")


def opencv_only_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from the header of an image OpenCV decodes and Pillow cannot (colour PFM,
    Radiance HDR): `ferkit predict` and training read them, and the server had answered "not an image"."""
    if match := _PFM.match(data[:64]):
        return int(match[1]), int(match[2])
    if match := _HDR.match(data[:64 * 1024]):
        first, second = int(match[2]), int(match[3])
        return (second, first) if match[1] == b"Y" else (first, second)  # -Y H +X W: rows first
    return None


def check_image(data: bytes) -> None:
    """Refuse huge, truncated or crafted images before a full decode."""
    from PIL import Image

    try:
        check_jpeg_scans(data, "the image")  # before Pillow's decode below, which would take as long
    except FerkitError as exc:
        raise HTTPException(400, str(exc)) from None

    try:
        with Image.open(io.BytesIO(data)) as header:
            width, height = header.size
            kind = header.format
    except Image.DecompressionBombError:
        raise HTTPException(413, f"image has too many pixels (limit {MAX_PIXELS // 1_000_000} megapixels)") from None
    except Exception:  # Pillow's format plugins raise more than OSError (a corrupt AVIF: RuntimeError)
        size = opencv_only_size(data)
        if size is None:
            raise HTTPException(400, unreadable_because(data)) from None  # a HEIC photo, a video: said
        (width, height), kind = size, None  # PFM or HDR: not a JPEG to check below
    if width * height > MAX_PIXELS:
        raise HTTPException(413, f"image is {width}x{height} pixels; the limit is {MAX_PIXELS // 1_000_000} megapixels")
    if kind == "JPEG":  # OpenCV decodes a truncated JPEG without error (grey bottom); Pillow says so
        try:
            with Image.open(io.BytesIO(data)) as image:
                # at an eighth of the size: the whole file is still read (a cut one still fails), in
                # about half the time (87 against 152 ms for a 12-megapixel JPEG of noise here)
                image.draft("L", (max(1, width // 8), max(1, height // 8)))
                image.load()
        except OSError:
            raise HTTPException(400, "truncated or corrupt JPEG") from None
