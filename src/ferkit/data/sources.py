"""Read FER2013 in every form people have it: image folders, the downloaded .zip, or fer2013.csv.

Everything becomes one in-memory FerDataset of 48x48 grayscale faces. Bad rows and unreadable
images inside otherwise good data are skipped and counted by reason, never dropped silently.
Image files are read in path order whatever the archive's or file system's own order, because the
seeded splits index into that order: the same faces must give the same split as a folder, as the
downloaded zip, or re-zipped on another machine.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import cv2
import numpy as np

from ferkit.data.decoding import IMAGE_SUFFIXES, decode_bgr
from ferkit.data.files import is_os_litter, is_os_metadata, walk_files
from ferkit.data.labels import CSV_CODES, EMOTIONS, FOLDER_NAMES
from ferkit.data.preprocess import FER_SIZE, resize_square, to_gray
from ferkit.errors import FerkitError

log = logging.getLogger("ferkit")

# Archives ferkit does not open inside others: Kaggle's fer2013.tar.gz, a zip of the zip
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz", ".7z", ".rar")
# Where a face came from in FER2013's protocol; "" when the source does not say.
USAGE_FROM_CSV = {"training": "train", "publictest": "public", "privatetest": "private"}
USAGE_FROM_FILENAME = {"training_": "train", "publictest_": "public", "privatetest_": "private"}
# What Python's zipfile decompresses (7-Zip can also write Deflate64 and PPMd, which it cannot)
ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA,
               getattr(zipfile, "ZIP_ZSTANDARD", zipfile.ZIP_STORED)}  # Zstandard from Python 3.14
ZIP_METHOD_NAMES = {9: "Deflate64", 93: "Zstandard", 97: "WavPack", 98: "PPMd", 99: "AES encryption"}
# "val": a held-out part the data's maker set aside (Kaggle's images/train + images/validation).
USAGE_FROM_FOLDER = {"train": "train", "training": "train", "test": "public", "testing": "public",
                     "publictest": "public", "privatetest": "private", "val": "val", "valid": "val",
                     "validation": "val"}


@dataclass
class FerDataset:
    """Faces (uint8, N x 48 x 48), labels (index into `classes`), usage, and what was skipped.

    `classes` is all of EMOTIONS as read; a subset made for a run (`select_classes`) numbers its
    labels in the run's classes and says so, so that its counts name the right emotions."""

    images: np.ndarray
    labels: np.ndarray
    usage: np.ndarray
    source: str
    skipped: Counter = field(default_factory=Counter)
    classes: tuple[str, ...] = EMOTIONS
    # Where each face came from: its path in the folder or zip, or its CSV line ("line 5"), so that a
    # per-face report (predictions.csv) points at the image a student wants to look at
    names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def class_counts(self) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(self.classes))
        return {name: int(n) for name, n in zip(self.classes, counts) if n}


def load_fer(path: str | os.PathLike) -> FerDataset:
    """Load a FER2013 CSV, image folder or zip of image folders."""
    path = Path(path)
    if not path.exists():
        raise FerkitError(f"data not found: {path}")
    if path.is_file() and path.stat().st_size == 0:
        raise FerkitError(f"data file is empty: {path}")
    if path.is_dir():
        files = list(walk_files(path))
        table = _the_table([f.relative_to(path).as_posix() for f in files], path)
        if table is not None:  # an extracted fer2013.tar.gz: fer2013.csv and a README
            return _load_csv(path / table)
        entries = ((full.relative_to(path).as_posix(), lambda full=full: _read_file(full)) for full in files)
    elif path.suffix.lower() == ".zip" or zipfile.is_zipfile(path):
        return _load_zip(path)
    elif path.suffix.lower() == ".csv":
        return _load_csv(path)
    else:
        extract = " (extract this archive first)" if path.name.lower().endswith(ARCHIVE_SUFFIXES) else ""
        raise FerkitError(f"unsupported data {path}: give a FER2013 .csv, a .zip or a folder{extract}")
    return _decode_entries(entries, str(path), "unreadable file (a broken link, no permission)")


def _load_zip(path: Path) -> FerDataset:
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, NotImplementedError) as exc:  # NotImplementedError: a damaged "version needed"
        raise FerkitError(f"not a readable zip file: {path} ({exc})") from None
    with archive:
        # Older Windows zippers (PowerShell 5's Compress-Archive) write folders with backslashes
        members = [(m.filename.replace("\\", "/"), m) for m in archive.infolist()]
        members = [(name, m) for name, m in members if not name.endswith("/")]
        data_files = [m for name, m in members if name.lower().endswith((".csv", *IMAGE_SUFFIXES))]
        locked = sum(m.flag_bits & 0x1 for m in data_files)  # a locked readme is no reason to refuse the faces
        if locked:
            raise FerkitError(f"{path}: {locked} of its files are password-protected: unzip it with its password "
                              "and give the folder")
        unreadable = sorted({m.compress_type for m in data_files} - ZIP_METHODS)
        if unreadable:  # each file would be counted as damaged, and a good download sent for again
            named = ", ".join(ZIP_METHOD_NAMES.get(method, f"method {method}") for method in unreadable)
            raise FerkitError(f"{path} is compressed with {named}, which Python's zipfile cannot read: extract "
                              "it with another tool (7-Zip, unzip) and give the folder")
        table = _the_table([name for name, _ in members], path)
        if table is not None:  # fer2013.csv zipped as it is: read inside the zip, like the folders of images
            try:
                with archive.open(dict(members)[table]) as raw:
                    text = io.TextIOWrapper(raw, encoding="utf-8-sig", errors="replace", newline="")
                    return _read_csv(text, f"{path}:{table}")
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:  # a bad checksum, cut off
                raise FerkitError(f"{path}: its {table} is damaged ({exc}): download it again, or extract "
                                  "what is readable and give the .csv") from None
        entries = ((name, lambda m=member: _read_member(archive, m)) for name, member in members)
        return _decode_entries(entries, str(path), "damaged in the zip")


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo) -> bytes | None:
    """A member's bytes, or None where the zip is damaged there (a bad checksum, a cut-off copy):
    counted like an unreadable image rather than ending the whole load with a traceback."""
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, OSError):
        return None


def _read_file(path: Path) -> bytes | None:
    """A file's bytes, or None where it cannot be read (a broken link, no permission): counted like
    a damaged zip member, not the end of the whole load."""
    try:
        return path.read_bytes()
    except OSError:
        return None


def _the_table(names: list[str], where: Path) -> str | None:
    """The one FER2013 CSV of a folder or zip that holds no images in emotion folders, which is then
    read instead (an image beside it, a preview or a plot, had hidden it); several CSVs without such
    images (Kaggle's competition download) are named, since which one holds FER2013 is the user's to say."""
    names = [name for name in names if not is_os_metadata(PurePosixPath(name).parts)]  # "./" is no hidden folder
    if any(PurePosixPath(name).suffix.lower() in IMAGE_SUFFIXES and _place(PurePosixPath(name).parts)[0]
           for name in names):
        return None
    tables = sorted(name for name in names if name.lower().endswith(".csv"))
    if len(tables) > 1:
        raise FerkitError(f"{where} holds {len(tables)} CSV files and no images in emotion folders "
                          f"({', '.join(tables)}): give the one with FER2013's emotion and pixels columns "
                          "(extract it from a zip first)")
    return tables[0] if tables else None


def _decode_entries(entries, source: str, unread: str) -> FerDataset:
    """Decode (relative path, read-bytes) pairs laid out as [split/]emotion/image, in path order; a
    file that cannot be read is counted as `unread` says."""
    images, labels, usage, names, skipped = [], [], [], [], Counter()
    for relpath, read in sorted(entries, key=lambda entry: PurePosixPath(entry[0]).parts):
        parts = PurePosixPath(relpath).parts
        if is_os_metadata(parts):
            # Not OS litter: a zip of ~/.data/, a notebook's .ipynb_checkpoints/. Counted, so that
            # "no images found" says where they were
            if PurePosixPath(relpath).suffix.lower() in IMAGE_SUFFIXES and not is_os_litter(parts):
                skipped["hidden image (a name or folder starting with '.')"] += 1
            continue
        if relpath.lower().endswith(ARCHIVE_SUFFIXES):  # said as such, not as a file outside an emotion folder
            skipped["archive inside (give it to ferkit itself, or extract it)"] += 1
            continue
        emotion, part = _place(parts)
        if not emotion:
            skipped[f"file outside an emotion folder ({'/'.join(parts[:-1]) or '.'})"] += 1
            continue
        if PurePosixPath(relpath).suffix.lower() not in IMAGE_SUFFIXES:
            skipped["not an image file"] += 1
            continue
        data = read()
        if data is None:
            skipped[unread] += 1
            continue
        gray = _decode_gray(data)
        if gray is None:
            skipped["unreadable image"] += 1
            continue
        images.append(resize_square(gray, FER_SIZE))
        labels.append(EMOTIONS.index(emotion))
        usage.append(part)
        names.append(relpath)
    if not images:
        passed = f" (passed over: {describe_skipped(skipped)})" if skipped else ""
        raise FerkitError(
            f"no images found in {source}: expected [train|validation|test/]<emotion>/<image> with emotion "
            f"folders named {', '.join(EMOTIONS)} (or {', '.join(sorted(set(FOLDER_NAMES) - set(EMOTIONS)))}){passed}"
        )
    return _dataset(images, labels, usage, source, skipped, names)


def _place(parts: tuple[str, ...]) -> tuple[str, str]:
    """The emotion the nearest of a file's folders names, and its part of the data by the nearest folder
    naming one; ("", "") where no folder names an emotion. Not only the folders next to the file: one's
    own data may keep each person apart (train/happy/s01/*.jpg), or each emotion's parts (happy/test/)."""
    emotion = next((FOLDER_NAMES[f.lower()] for f in reversed(parts[:-1]) if f.lower() in FOLDER_NAMES), "")
    split = next((f for f in reversed(parts[:-1]) if f.lower() in USAGE_FROM_FOLDER), "")
    return emotion, _usage_of((split, emotion, parts[-1])) if emotion else ""


def _decode_gray(data: bytes) -> np.ndarray | None:
    """None where OpenCV cannot decode: it returns None for most bad bytes, but asserts on empty
    ones (a 0-byte file from an interrupted copy) and on images over its pixel limit. Decoded the
    way inference reads images, `decode_bgr` then gray, so that a face trains as it is later seen:
    OpenCV's own grayscale decode rounds colour PNGs differently (by 1 on half their pixels), shifts
    12-bit data by 8 (nearly black) and refuses float colour TIFFs. FER2013's faces come out the
    same either way, in about the same time."""
    if not data:
        return None
    try:
        bgr = decode_bgr(data)
    except cv2.error:
        return None
    return None if bgr is None else to_gray(bgr)


def _usage_of(parts: tuple[str, ...]) -> str:
    """A face's part of the data: its folder's where that names one, since a user who moved
    Training_ files into val/ (or PublicTest_ ones into train/) meant them to be there; FER2013's
    own file names where no folder says, and within a test/ folder, which may hold PublicTest_ and
    PrivateTest_ faces both."""
    name = parts[-1].lower()
    by_name = next((usage for prefix, usage in USAGE_FROM_FILENAME.items() if name.startswith(prefix)), "")
    folder = parts[-3].lower() if len(parts) >= 3 else ""
    if folder in ("test", "testing") and by_name in ("public", "private"):
        return by_name
    return USAGE_FROM_FOLDER.get(folder, "") or by_name


def _load_csv(path: Path) -> FerDataset:
    with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
        return _read_csv(handle, str(path))


def _read_csv(handle, source: str) -> FerDataset:
    csv.field_size_limit(2**31 - 1)  # sys.maxsize overflows a C long on Windows; a row needs ~10 KB
    reader = csv.DictReader(handle)
    columns = {c.strip().lower(): c for c in reader.fieldnames or []}
    missing = [c for c in ("emotion", "pixels") if c not in columns]
    if missing:
        header = ",".join(reader.fieldnames or [])
        hint = "; saved with semicolons? save it comma-separated" if ";" in header and "," not in header else ""
        raise FerkitError(
            f"{source} is not a FER2013 CSV: missing column(s) {', '.join(missing)} "
            f"(expected emotion,pixels[,Usage]; its header: {header[:80]!r}{hint})"
        )
    images, labels, usage, names, skipped, unknown_usage = [], [], [], [], Counter(), Counter()
    for row in reader:
        if any("\n" in value for value in row.values() if isinstance(value, str)):
            # a quote opened and never closed: every row after it would be read into one field
            raise FerkitError(f"{source}, line {reader.line_num}: a field runs over several lines (a quote "
                              "opened and never closed?): the rows after it cannot be read")
        parsed = _parse_csv_row(row, columns, skipped)
        if parsed is not None:
            images.append(parsed[0])
            labels.append(parsed[1])
            usage.append(parsed[2])
            names.append(f"line {reader.line_num}")
            if parsed[3]:
                unknown_usage[parsed[3]] += 1
    if not images:
        raise FerkitError(f"no usable rows in {source} ({describe_skipped(skipped) or 'it has no data rows'})")
    if unknown_usage:
        log.warning("%s: Usage values ferkit does not know, read as no usage: %s", source,
                    ", ".join(f"{value!r} ({n})" for value, n in unknown_usage.most_common(5)))
    return _dataset(images, labels, usage, source, skipped, names)


def _parse_csv_row(row, columns, skipped: Counter):
    code = (row.get(columns["emotion"]) or "").strip()  # FER2013's 0-6, or a name as folders have them
    emotion = CSV_CODES.get(int(code)) if code.isdecimal() else FOLDER_NAMES.get(code.lower())
    if emotion is None:
        skipped["bad emotion code"] += 1
        return None
    try:
        pixels = np.array((row.get(columns["pixels"]) or "").split(), dtype=np.int32)
    except (ValueError, OverflowError):
        skipped["non-numeric pixels"] += 1
        return None
    if pixels.size != FER_SIZE * FER_SIZE or pixels.min() < 0 or pixels.max() > 255:
        skipped[f"not {FER_SIZE * FER_SIZE} pixels in 0..255"] += 1
        return None
    raw_usage = (row.get(columns.get("usage", ""), "") or "").strip().lower()
    image = pixels.astype(np.uint8).reshape(FER_SIZE, FER_SIZE)
    # FER2013's own names, or the folder names ferkit reads (train, test, validation, ...)
    usage = USAGE_FROM_CSV.get(raw_usage) or USAGE_FROM_FOLDER.get(raw_usage, "")
    return image, EMOTIONS.index(emotion), usage, raw_usage if raw_usage and not usage else ""


def _dataset(images, labels, usage, source, skipped, names) -> FerDataset:
    return FerDataset(
        images=np.stack(images),
        labels=np.asarray(labels, np.int64),
        usage=np.asarray(usage, dtype="<U7"),
        source=source,
        skipped=skipped,
        names=np.asarray(names),
    )


def describe_skipped(skipped: Counter) -> str:
    """'12 unreadable image, 3 bad emotion code' or '' when nothing was skipped."""
    return ", ".join(f"{n} {reason}" for reason, n in skipped.most_common())
