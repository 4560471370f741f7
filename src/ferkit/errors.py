"""The one exception type the CLI turns into a one-line message instead of a traceback, and the
checks many of those messages share."""

import numbers


class FerkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def is_whole_number(value: object, least: int) -> bool:
    """An int (numpy's too, not a bool) of at least `least`: what counts of faces, frames, threads
    and pixels must be, whether a user typed them or a program passed them."""
    return not isinstance(value, bool) and isinstance(value, numbers.Integral) and value >= least


def missing_package(name: str) -> str:
    """The extra that installs a missing package, said the same way by the CLI and the Python API."""
    extra = "serve" if name in ("fastapi", "uvicorn", "multipart", "PIL") else "train"
    return f"this needs {name}, which is not installed: pip install 'ferkit[{extra}]'"
