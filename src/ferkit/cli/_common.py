"""Flags shared by the commands that run a model on faces."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ferkit.choices import DETECTORS
from ferkit.errors import FerkitError
from ferkit.hardware import most_threads


def add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", type=nonempty,
                        help="default (the bundled model), a run directory, a .keras or an .onnx file")
    parser.add_argument("--threads", type=_threads,
                        help="ONNX Runtime threads (default: CPU cores, at most 4); .keras models use TensorFlow's own")
    parser.add_argument("--tta", action="store_true",
                        help="test-time augmentation: average over flipped and shifted copies (6x the work; "
                             "5x for a model that averages mirror images itself)")
    parser.add_argument("--detector", choices=DETECTORS, default="yunet",
                        help="face detector (default yunet; haar is the original project's)")
    parser.add_argument("--min-face", type=_positive, help="smallest face to report, in pixels")
    parser.add_argument("--max-faces", type=_positive, metavar="N",
                        help="only the N largest faces of each image or frame (e.g. 1: the person at the camera)")
    parser.add_argument("--min-detection-score", type=_fraction, metavar="S",
                        help="yunet: report faces it is at least this sure of, 0-1 (default 0.7; lower finds "
                             "more faces, and more that are not)")
    parser.add_argument("--tiny-faces", action="store_true",
                        help="yunet: also search big photos tile by tile for faces too small at 640 px")
    parser.add_argument("--no-align", dest="align", action="store_false",
                        help="yunet: do not level the eyes from its landmarks before classifying")


def add_frame_options(parser: argparse.ArgumentParser) -> None:
    """How often a video's faces are looked for, and how their scores are averaged over time."""
    parser.add_argument("--every", type=_positive, default=1, metavar="N",
                        help="detect and classify every Nth frame, reuse the faces in between (default 1)")
    parser.add_argument("--smooth", type=_positive, default=1, metavar="N",
                        help="average each face's scores over about N analysed frames, so labels do not "
                             "flicker (default 1: off)")


def _number(kind: type, low: float, high: float, what: str, low_open: bool = False):
    """An argparse type: a `kind` number from `low` (excluded if `low_open`) to `high`, or a one-line error."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what}, got {text!r}") from None
        if not (low < value if low_open else low <= value) or not value <= high:
            raise argparse.ArgumentTypeError(f"{what}, got {text}")
        return value
    return parse


def on_off(text: str) -> bool:
    """An argparse type for the recipe switches train and compare override (`--augment on`)."""
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected on/off, got {text!r}")


def fractions(text: str) -> tuple[float, ...]:
    """--fractions 0.8,0.1,0.1 (train, val, test), for train and compare alike."""
    try:
        return tuple(float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"three numbers such as 0.8,0.1,0.1, got {text!r}") from None


def nonempty(text: str) -> str:
    """An argparse type for a path or a name: an empty one (an unset shell variable) is refused, not
    read as the current folder, nor as no --output at all."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty name")
    return text


_most_threads = most_threads()
_threads = _number(int, 1, _most_threads, f"1 to {_most_threads} (4 x the cores ferkit may use)")
_positive = _number(int, 1, float("inf"), "a whole number, at least 1")
_fraction = _number(float, 0, 1, "a number above 0, at most 1", low_open=True)  # 0 would let every box through


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """TensorFlow's start-up lines from C++ (absl writes them before any log level is set, whatever
    TF_CPP_MIN_LOG_LEVEL says: six lines of oneDNN and CUDA notes) kept out of ferkit's output
    while Keras is imported; shown after all if the import fails, since they may say why."""
    import sys
    import tempfile

    with tempfile.TemporaryFile() as said:
        sys.stderr.flush()
        saved = os.dup(2)
        os.dup2(said.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            said.seek(0)
            sys.stderr.write(said.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def keras_imported_quietly(model: str | None) -> None:
    """Keras imported now, its start-up lines hidden, where `model` is one that Keras will load (a
    .keras file, or a run not exported to ONNX): evaluate, predict and the rest say nothing else."""
    from ferkit.inference.backends import resolve_model

    try:
        path = resolve_model(model)
    except FerkitError:
        return  # said where the model is loaded
    if path.suffix.lower() != ".onnx":
        with contextlib.suppress(ImportError), native_stderr_hidden():  # then said with the pip hint there
            import keras  # noqa: F401


def recognizer_options(args: argparse.Namespace) -> dict:
    """EmotionRecognizer's keyword arguments from the flags of `add_model_options`."""
    # haar gives no landmarks either, so its faces are never levelled: --no-align would say nothing
    yunet_only = [flag for flag, given in (("--tiny-faces", args.tiny_faces),
                                           ("--min-detection-score", args.min_detection_score is not None),
                                           ("--no-align", not args.align)) if given]
    if yunet_only and args.detector != "yunet":
        raise FerkitError(f"{yunet_only[0]} works with --detector yunet only")
    options = {"min_size": args.min_face} if args.min_face is not None else {}
    if args.tiny_faces:
        options["second_pass"] = True
    if args.min_detection_score is not None:
        options["score_threshold"] = args.min_detection_score
    return {"threads": args.threads, "align": args.align, "tta": args.tta, "max_faces": args.max_faces, **options}


def recognizer(args: argparse.Namespace):
    from ferkit.inference import EmotionRecognizer

    keras_imported_quietly(args.model)
    return EmotionRecognizer(args.model, args.detector, **recognizer_options(args))


def output_path(name: str | None, folder: bool = False, inputs: Iterable[str | Path] = ()) -> Path | None:
    """A file (or folder) the command writes, checked and its folder made before the work starts:
    a typo in an output path must not cost the results of a long folder or video, nor overwrite
    one of the `inputs` being read."""
    from ferkit.data.files import real_path

    if name is None:
        return None
    path = Path(name)
    if any(real_path(path) == real_path(source) for source in inputs):
        raise FerkitError(f"{path} is one of the inputs: writing it would destroy what is being read")
    parent = path if folder else path.parent
    blocker = next((p for p in (parent, *parent.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise FerkitError(f"cannot write {path}: {blocker} is a file, not a folder")
    if not folder and path.is_dir():
        raise FerkitError(f"cannot write {path}: it is a folder")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise FerkitError(f"cannot write {path}: {exc.strerror or exc}") from None
    if not os.access(parent, os.W_OK):
        raise FerkitError(f"cannot write {path}: {parent} is not writable")
    if not folder and path.is_file():
        try:  # opened to append, changed in nothing: a read-only file (or an immutable one, as root) says so
            path.open("ab").close()
        except OSError as exc:
            raise FerkitError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


@contextlib.contextmanager
def outputs() -> Iterator[Callable[..., Path | None]]:
    """`output_path` for the block; the folders it made are removed again, if still empty, when the
    block fails: a typo in the data or the model must not leave an empty results folder behind."""
    made: list[list[Path]] = []

    def make(name: str | None, folder: bool = False, inputs: Iterable[str | Path] = ()) -> Path | None:
        if name is not None:
            path = Path(name) if folder else Path(name).parent
            made.append([p for p in (path, *path.parents) if not p.exists()])  # the deepest first
        return output_path(name, folder, inputs)

    try:
        yield make
    except BaseException:
        for chain in reversed(made):  # the last made first: an earlier one may hold it
            for path in chain:
                try:
                    path.rmdir()  # only if empty: what the command wrote stays
                except OSError:
                    break
        raise
