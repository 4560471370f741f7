"""Which files a command reads: the images among the paths, folders and wildcards a user gave, and
ferkit's own annotated copies (marked as such) told apart from the user's images."""

from __future__ import annotations

import glob
import logging
import os
import re
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

from ferkit.data.decoding import IMAGE_SUFFIXES
from ferkit.data.files import is_os_litter, is_os_metadata, real_path, walk_files
from ferkit.inference.images import is_data_url, is_url

log = logging.getLogger("ferkit")


# A PNG text chunk that marks ferkit's annotated copies, read back to tell them from a user's own
# images of the same name: those are inputs, and never written over.
_COPY_MARK = b"Software\0ferkit predict --save-annotated"
_PNG_HEADER = 33  # the signature and the IHDR chunk, which must come first


def marked_as_copy(png: bytes) -> bytes:
    """An annotated copy's PNG file, marked as ferkit's (a tEXt chunk after the header)."""
    chunk = b"tEXt" + _COPY_MARK
    return png[:_PNG_HEADER] + struct.pack(">I", len(_COPY_MARK)) + chunk + \
        struct.pack(">I", zlib.crc32(chunk)) + png[_PNG_HEADER:]


def is_annotated_copy(path: Path) -> bool:
    """Whether a file is one of ferkit's annotated copies (its mark), which a later run may replace."""
    try:
        with open(path, "rb") as f:
            return _COPY_MARK in f.read(_PNG_HEADER + 12 + len(_COPY_MARK))
    except OSError:  # unreadable: an input, whose own error says why
        return False


def find_images(paths: list[str | Path], leave_out: Path | None = None) -> list[Path | str]:
    """Files, http(s) URLs and data URLs as given, and folders searched for image files (linked
    folders too), in a stable order.

    What a folder holds besides images is counted and said, not passed over in silence; so are
    ferkit's annotated copies in `leave_out`, a command's output folder (its copies of the last run
    are not new inputs), whether that folder is an input itself (`predict photos --save-annotated
    photos`, or a shell's `photos/*` that lists it too) or lies inside one.
    """
    found: list[Path | str] = []
    given = 0
    for given, raw in enumerate(_expanded(paths), start=1):
        if is_url(raw) or is_data_url(raw):  # kept as written: a Path would fold // (base64 has them) into one
            found.append(str(raw))
            continue
        path = Path(raw)
        if not path.is_dir():
            if leave_out is not None and _outputs_among([path], leave_out.resolve()):
                log.warning("left out %s: this command's own copy, in its output folder", path)  # `photos/*`
            else:
                found.append(path)
            continue
        # Files, and links to them, broken ones too (a clear error of their own): not a pipe or
        # device named .jpg, which would wait for a writer or read for ever
        every = [p for p in walk_files(path) if p.is_file() or not p.exists()]
        files = [p for p in every if not is_os_metadata(p.relative_to(path).parts)]
        _say_hidden(path, sorted(set(every) - set(files)))
        # Named as images: read (a broken link among them is then a clear error of its own)
        inside = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
        _say_left_out(path, [p for p in files if p.suffix.lower() not in IMAGE_SUFFIXES])
        if leave_out is not None:
            ours = _outputs_among(inside, leave_out.resolve())
            if ours:
                log.warning("%s: left out the %d image%s in %s, this command's output", path, len(ours),
                            "s" * (len(ours) > 1), leave_out)
            inside = [p for p in inside if p not in ours]
        if not inside:  # said, not skipped in silence: a wrong folder among several is easy to miss
            log.warning("no image files in %s (looked for %s)", path, " ".join(sorted(IMAGE_SUFFIXES)))
        found += sorted(inside)
    # One path names each file once (a folder's walk reads each real folder once): no file resolved then,
    # which a folder of 100,000 photos would pay for at every start
    return _once_each(found) if given > 1 else found


def _once_each(found: list[Path | str]) -> list[Path | str]:
    """Each file once, however many of the paths name it (`photos photos/a.jpg`, a file and a link
    to it, a wildcard and a name): it had been analysed twice, its annotated copy written twice.
    A URL given twice is fetched twice: a camera's snapshot URL answers anew each time."""
    seen: set[Path] = set()
    once, again = [], []
    for item in found:
        key = None if isinstance(item, str) else real_path(item)
        (again if key in seen else once).append(item)
        if key is not None:
            seen.add(key)
    if again:
        log.warning("%d of the paths given name a file already among them (e.g. %s): each file is read once",
                    len(again), again[0])
    return once


def _expanded(paths: list[str | Path]) -> Iterator[str | Path]:
    """The paths, with the wildcards a shell left as they were expanded as a POSIX shell would
    (Windows' cmd and PowerShell expand none, and none is expanded in quotes): `photos/*.jpg` had
    been one image not found. A pattern that matches nothing stays, to be said not found."""
    for raw in paths:
        text = os.fspath(raw)
        if not is_url(raw) and not is_data_url(raw) and any(c in text for c in "*?[") and not os.path.lexists(text):
            # Brackets that match nothing as a class are taken as they are: "[2023] trip/*.jpg"
            matches = sorted(glob.glob(text)) or sorted(glob.glob(re.sub(r"([\[\]])", r"[\1]", text)))
            if matches:
                yield from matches
                continue
        yield raw


def _outputs_among(images: list[Path], output: Path) -> list[Path]:
    """The images that a command writing to `output` made: its marked copies there. The mark, not
    the place, tells: an output folder inside an input folder may hold the user's own photos too
    (`predict .. --save-annotated .` from a photo folder had left all of that folder's photos out)."""
    return [p for p in images if real_path(p).parent == output and is_annotated_copy(p)]


def _say_hidden(folder: Path, hidden: list[Path]) -> None:
    """Hidden images (a name or folder starting with a dot) are left out like .DS_Store, but said:
    a user's own .jpg there may be wanted. macOS' ._ companions and __MACOSX/ are not images."""
    images = [p for p in hidden if p.suffix.lower() in IMAGE_SUFFIXES and not is_os_litter(p.relative_to(folder).parts)]
    if images:
        log.warning("%s: left out %d hidden image%s (a name or folder starting with '.', e.g. %s): give "
                    "them by name to read them", folder, len(images), "s" * (len(images) > 1),
                    images[0].relative_to(folder))


def _say_left_out(folder: Path, others: list[Path]) -> None:
    if others:
        kinds = sorted({p.suffix.lower() or "no suffix" for p in others})
        log.warning("%s: left out %d file%s not named as images (%s); ferkit reads %s", folder, len(others),
                    "s" * (len(others) > 1), ", ".join(kinds[:6]) + (", ..." if len(kinds) > 6 else ""),
                    " ".join(sorted(IMAGE_SUFFIXES)))
