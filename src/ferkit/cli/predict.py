"""`ferkit predict`: emotions of the faces in image files and folders."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from pathlib import Path

from ferkit.cli._common import add_model_options, nonempty, outputs, recognizer


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="faces and emotions in images (files or folders)",
                       description="One line per face: file, box (x,y,w,h), label, confidence.")
    p.add_argument("paths", type=nonempty, nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively), http(s) URLs and data: URLs")
    form = p.add_mutually_exclusive_group()
    form.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    form.add_argument("--jsonl", action="store_true",
                      help="print one JSON object per image as it is done (JSON Lines), for pipes and big folders")
    p.add_argument("--csv", type=nonempty, metavar="FILE", help="also write one row per face to FILE")
    p.add_argument("--save-annotated", type=nonempty, metavar="DIR",
                   help="write a copy of each image with labels drawn")
    p.add_argument("--no-detect", action="store_true",
                   help="each image is already one face crop (like FER2013's 48x48): classify it whole")
    add_model_options(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ferkit.errors import FerkitError
    from ferkit.inference.inputs import find_images

    _check_no_detect(args)
    with outputs() as output_path:
        annotated = output_path(args.save_annotated, folder=True)
        images = find_images(args.paths, leave_out=annotated)
        if not images:  # said before the model's load, which takes seconds
            raise FerkitError(f"no images found in {', '.join(args.paths)}")
        csv_path = output_path(args.csv, inputs=images)
        rec = recognizer(args)
    # The inputs count as taken names: a copy must never overwrite an image being read, nor the CSV
    taken = {_name_key(path) for path in [*images, csv_path] if isinstance(path, Path)}
    # A bar where nothing else shows the progress (the lines on a terminal do), and only on a
    # terminal: in a log file its redraws are noise (tqdm's disable=None)
    lines = not (args.json or args.jsonl)
    quiet = args.quiet or len(images) < 2 or (lines and sys.stdout.isatty())
    results, stopped, crops = [], "", []
    try:
        for path in tqdm(images, unit="image", disable=True if quiet else None, file=sys.stderr):
            result = _analyse(rec, args, path, annotated, taken, crops)
            results.append(result)
            if lines and ("error" not in result or "annotated" in result):  # its faces, unless it failed before them
                _print_lines(result["file"], result["faces"])
            if "error" in result:
                tqdm.write(f"ferkit: {result['error']}", file=sys.stderr)  # not glued to the bar
            _print_jsonl(args, result)
    except KeyboardInterrupt:  # Ctrl-C ends the folder, not its results: those so far are written below
        stopped = "interrupted"
    except BrokenPipeError:  # `| head` stopped reading the lines: the CSV is still written
        stopped = "pipe"
    if crops:
        print(f"ferkit: no face found in {len(crops)} image{'s' * (len(crops) > 1)} of at most {CROP_SIDE} px (e.g. "
              f"{crops[0]}): if they are face crops already, as FER2013's 48x48 faces are, --no-detect classifies "
              "each image whole", file=sys.stderr)
    if stopped:  # a reader that left (`| head`) ends the run as Ctrl-C does: the CSV holds the images done
        print(f"ferkit: {'interrupted' if stopped == 'interrupted' else 'the output was closed'}: the results "
              f"hold the first {len(results)} of {len(images)} images", file=sys.stderr)
    unwritten = _write_csv(csv_path, results, rec.classes) if csv_path else ""  # first: a reader leaving costs no CSV
    if args.json and stopped != "pipe":  # and a CSV that cannot be written costs no JSON
        from ferkit.inference.backends import DEFAULT_MODEL  # loaded with the model already

        # "default" as the server says it, not the bundled file's path inside site-packages
        model = DEFAULT_MODEL if args.model == DEFAULT_MODEL else rec.backend.name
        print(json.dumps({"model": model, "results": results, "interrupted": bool(stopped)}, indent=2))
    if unwritten:  # said whatever the exit: a reader that left (| head) must not hide a lost CSV
        print(f"ferkit: error: {unwritten}", file=sys.stderr)
    if stopped == "pipe":
        raise BrokenPipeError  # the exit a reader that left expects (141)
    # 130: the shell's code for Ctrl-C
    return 130 if stopped else 2 if unwritten else 1 if any("error" in r for r in results) else 0


def _check_no_detect(args: argparse.Namespace) -> None:
    """--no-detect classifies each image whole: a detector flag beside it would be ignored without
    a word, so it is refused, as flags for another detector are."""
    from ferkit.errors import FerkitError

    given = [flag for flag, value in (("--detector haar", args.detector != "yunet"), ("--min-face", args.min_face),
                                      ("--max-faces", args.max_faces), ("--tiny-faces", args.tiny_faces),
                                      ("--min-detection-score", args.min_detection_score),
                                      ("--no-align", not args.align)) if value]
    if args.no_detect and given:
        raise FerkitError(f"--no-detect classifies each image whole: {', '.join(given)} "
                          f"{'act' if len(given) > 1 else 'acts'} on the faces a "
                          "detector finds, and it finds none")


CROP_SIDE = 96  # an image no larger is likely one face cropped already, too tight for a detector to find it


def _analyse(rec, args: argparse.Namespace, path: Path | str, annotated: Path | None, taken: set[str],
             crops: list[str]) -> dict:
    """One image's result: its faces, its annotated copy, or what went wrong. Any failure is this
    image's alone (a file OpenCV cannot decode, one too big to work on): the rest of the folder goes
    on, and the results so far are kept. `crops` gathers the small images with no face found."""
    import cv2

    from ferkit.errors import FerkitError
    from ferkit.inference.faces import Face
    from ferkit.inference.images import load_image, source_name

    name = source_name(path)
    try:
        image = load_image(path)  # a file, or a URL downloaded
        if args.no_detect:
            faces = [Face((0, 0, image.shape[1], image.shape[0]), scores=rec.classify([image])[0])]
        else:
            faces = rec.detect(image)
            if not faces and max(image.shape[:2]) <= CROP_SIDE:
                crops.append(name)
        result = {"file": name, "faces": [f.to_dict() for f in faces]}
        if annotated:
            out = _annotated_name(annotated, path, taken)
            problem = _write_png(out, rec.annotate(image, faces))
            result["annotated"] = str(out)
            if problem:  # e.g. a full disk: go on, say so
                result["error"] = problem
    except FerkitError as exc:
        return {"file": name, "error": str(exc), "faces": []}
    except (cv2.error, MemoryError) as exc:
        said = str(exc).strip().splitlines()[-1:] or ["no more said"]  # OpenCV's last line names the check
        return {"file": name, "error": f"cannot analyse {name}: {type(exc).__name__}: {said[0][:200]}",
                "faces": []}
    return result


def _print_jsonl(args: argparse.Namespace, result: dict) -> None:
    """An image's result on a line of its own as soon as it is done: `jq`, or a reader of a long
    folder, need not wait for the end."""
    if args.jsonl:
        print(json.dumps(result), flush=True)


def _annotated_name(folder: Path, path: Path | str, taken: set[str]) -> Path:
    """<stem>_annotated.png, numbered when that name is taken: by the copy of an input with the same
    name (a/x.jpg, b/x.jpg; A.JPG, a.png, one file on macOS' and Windows' file systems), by an input
    itself (x.jpg beside x_annotated.png, written back into their own folder), or by a file there
    that is not ferkit's copy (one of an earlier run is replaced). A URL's stem is its path's last
    part's; a data URL's is data-url."""
    from urllib.parse import unquote, urlsplit

    from ferkit.inference.images import is_data_url
    from ferkit.inference.inputs import is_annotated_copy

    if isinstance(path, Path):
        stem = path.stem
    elif is_data_url(path):
        stem = "data-url"
    else:  # what a URL's %-escapes decode to may be no part of a file name (%00)
        stem = "".join(c for c in Path(unquote(urlsplit(path).path)).stem if c.isprintable()) or "download"
    stem = _within_a_name(stem)
    out, n = folder / f"{stem}_annotated.png", 1
    while _name_key(out) in taken or (os.path.lexists(out) and not is_annotated_copy(out)):
        n += 1
        out = folder / f"{stem}_annotated-{n}.png"
    taken.add(_name_key(out))
    return out


NAME_BYTES = 255  # the longest file name of most file systems


def _within_a_name(stem: str) -> str:
    """`stem` cut by whole characters so that its numbered copy's name fits in a file name: a photo
    named with 245 bytes was read, and its copy then could not be written."""
    most = NAME_BYTES - len("_annotated-99999.png")
    stem = stem[:most]  # a character is a byte at least
    while len(os.fsencode(stem)) > most:
        stem = stem[:-1]
    return stem


def _name_key(path: Path) -> str:
    """A file's name as a case-insensitive file system tells files apart."""
    from ferkit.data.files import real_path

    return str(real_path(path)).casefold()


def _write_png(path: Path, image) -> str:
    """Encoded here and written by Python, which takes any file name the file system does (OpenCV's
    imwrite crashed on a name that is not UTF-8), marked as ferkit's copy; what went wrong, or ""."""
    import cv2

    from ferkit.inference.inputs import marked_as_copy

    ok, data = cv2.imencode(".png", image)
    try:
        if not ok:
            return f"cannot encode {path}"
        path.write_bytes(marked_as_copy(data.tobytes()))
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return ""


def _print_lines(name: str, faces: list[dict]) -> None:
    if not faces:
        print(f"{name}\tno face found")
    for face in faces:
        print(f"{name}\t{','.join(map(str, face['box']))}\t{face['label']}\t{face['confidence']:.3f}")


def _write_csv(path: Path, results: list[dict], classes) -> str:
    """One row per face; a file with no face, or that could not be read, gets one row of its own
    (empty face columns, the reason in `error`), so the CSV accounts for every input. `annotated`
    names the file's annotated copy: img.bmp and img.webp cannot both be img_annotated.png.

    UTF-8 for any file name on any OS; a name that is not UTF-8 itself (bytes of another
    encoding) is written with backslash escapes instead of ending the run. Returns what went
    wrong, or "": a disk that filled up during a long folder must not cost the JSON too."""
    try:
        with open(path, "w", newline="", encoding="utf-8", errors="backslashreplace") as handle:
            _csv_rows(csv.writer(handle), results, classes)
    except OSError as exc:
        return f"cannot write {path}: {exc.strerror or exc}"
    return ""


def _csv_rows(writer, results: list[dict], classes) -> None:
    from ferkit.inference.faces import FACE_COLUMNS, face_cells

    writer.writerow(["file", "face", *FACE_COLUMNS, *classes, "error", "annotated"])
    for result in results:
        error, copy = result.get("error", ""), result.get("annotated", "")
        for i, face in enumerate(result["faces"]):
            writer.writerow([result["file"], i, *face_cells(face, classes), error, copy])
        if not result["faces"]:
            empty = [""] * (1 + len(FACE_COLUMNS) + len(classes))
            writer.writerow([result["file"], *empty, error or "no face found", copy])
