"""The `ferkit` command. Each sub-command lives in its own module with `add_parser` and `run`."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator

from ferkit import __version__
from ferkit.errors import FerkitError, missing_package

COMMANDS = ("train", "evaluate", "compare", "export", "predict", "video", "demo", "info", "serve")


def build_parser() -> argparse.ArgumentParser:
    from importlib import import_module

    parser = argparse.ArgumentParser(prog="ferkit", description="Facial emotion recognition on FER2013.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("-V", "--version", action="version", version=f"ferkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        import_module(f"ferkit.cli.{name}").add_parser(sub)
    for command in sub.choices.values():  # after the command too (`ferkit predict x.jpg -q`)
        command.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                             help="only warnings and errors")
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TensorFlow's start-up chatter is not ours
    # nor OpenCV's warnings ("can't open camera by index", a TIFF's tags) before ferkit's own error:
    # for processes it starts, and for its own cv2, which `import ferkit` loaded before the variable
    if "OPENCV_LOG_LEVEL" not in os.environ:
        os.environ["OPENCV_LOG_LEVEL"] = "ERROR"
        import cv2

        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    args = build_parser().parse_args(argv)
    if hasattr(sys.stdout, "reconfigure"):  # a file name that is not UTF-8 is printed escaped, not a crash
        sys.stdout.reconfigure(errors="backslashreplace")
    # ferkit's own progress at INFO; other libraries' (tf2onnx's "Using opset") only when they warn
    logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    logging.getLogger("ferkit").setLevel(logging.WARNING if args.quiet else logging.INFO)
    # TensorFlow counts retracings over every model a process predicts with: compare's recipes, each
    # a new model, drew "5 out of the last 10 calls ... triggered tf.function retracing" at the user
    logging.getLogger("tensorflow").addFilter(_not_retracing)
    with _sigterm_as_ctrl_c(args.command != "serve"):  # uvicorn stops on SIGTERM by itself
        return _run(args)


def _not_retracing(record: logging.LogRecord) -> bool:
    return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def _sigterm_as_ctrl_c(wanted: bool) -> Iterator[None]:
    """`timeout`, `docker stop`, systemd: SIGTERM ends a command as Ctrl-C does, so that what is
    done is kept (a predict's results so far, training's checkpoint after the current batch),
    and then ends the process by SIGTERM after all, as such a supervisor expects."""
    terminated = []

    def as_ctrl_c(signum, frame):
        terminated.append(signum)
        handler = signal.getsignal(signal.SIGINT)  # training's: stop after this batch
        if callable(handler):
            handler(signum, frame)  # named as what it is: a `timeout`'s TERM had been said to be a Ctrl-C
        else:
            raise KeyboardInterrupt

    if not wanted or threading.current_thread() is not threading.main_thread():  # signals reach it only
        yield
        return
    previous = signal.signal(signal.SIGTERM, as_ctrl_c)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if terminated:
            with contextlib.suppress(OSError):  # a reader gone too
                sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGTERM)


def _run(args: argparse.Namespace) -> int:
    try:
        return int(args.run(args) or 0)
    except FerkitError as exc:
        print(f"ferkit: error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(f"ferkit: error: {_missing_package(exc)}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `ferkit ... | head` stopped reading: not an error, and nothing left to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so that exit's flush fails silently
        return 141  # a shell's code for a command ended by SIGPIPE
    except OSError as exc:
        print(f"ferkit: error: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ferkit: interrupted", file=sys.stderr)
        return 130


def _missing_package(exc: ImportError) -> str:
    """Name the extra to install where a package is missing: not for a name missing from a module
    that is there (a version mismatch, a broken install), nor for a module of ferkit's own."""
    missing = isinstance(exc, ModuleNotFoundError) and exc.name and exc.name.split(".")[0] != "ferkit"
    return missing_package(exc.name) if missing else f"import failed: {exc}"
