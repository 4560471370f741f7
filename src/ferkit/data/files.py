"""Which files a folder holds to read: its links followed once, what an OS or archiver leaves beside
images passed over. Shared by training's data folders and inference's inputs."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger("ferkit")


def walk_files(root: Path) -> Iterator[Path]:
    """Every file under `root`. Linked folders are followed (a split or an emotion linked in from
    elsewhere), each real folder once: a link back up the tree ends instead of looping, and a folder
    linked in twice (train/happy and test/happy, say) is read once, not into two parts of the split."""
    seen: set[str] = set()

    def unreadable(error: OSError) -> None:  # said, not skipped in silence: its files are missing
        log.warning("cannot list %s (%s): its files are left out", error.filename, error.strerror or error)

    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            log.warning("%s is a folder already read (through a link): read once", dirpath)
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()  # the first of two links to one folder is the same on every machine
        yield from (Path(dirpath) / name for name in filenames)


def real_path(path: str | os.PathLike) -> Path:
    """`path` with its links resolved, or only made absolute where they loop: Python 3.11 and 3.12
    raise RuntimeError for a link to itself (an OSError is caught too), which must come out as one
    unreadable file among the rest, not as a traceback that ends a folder's run."""
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError):
        return Path(path).absolute()


def is_os_metadata(parts: tuple[str, ...]) -> bool:
    """Hidden files and folders, and what an OS or archiver leaves beside images (.DS_Store, macOS'
    ._photo.jpg, __MACOSX/): not read as data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in parts)


def is_os_litter(parts: tuple[str, ...]) -> bool:
    """What an OS or archiver leaves beside images, never anyone's data: skipped without a word."""
    return "__MACOSX" in parts or parts[-1].startswith("._") or parts[-1] == ".DS_Store"
