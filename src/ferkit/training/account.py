"""A run's own account (the data loaded, the classes left out, how many epochs the time limit lets
fit, the lighter fallback network, the test score) for callers from Python as well as the CLI.

ferkit says these at INFO on the "ferkit" logger, which Python keeps silent until someone sets
logging up: only the CLI did, so `ferkit.train()` in a notebook printed Keras' epoch lines and no
word of a CPU too slow for the recipe's network. Where nobody has set logging up, a call that
shows Keras' progress (`verbose` not 0) now shows ferkit's account too, on stderr, as the CLI does;
an application's own logging configuration is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import sys
from collections.abc import Callable, Iterator
from typing import TypeVar

log = logging.getLogger("ferkit")
T = TypeVar("T")


def tells_its_account(work: Callable[..., T]) -> Callable[..., T]:
    """`work` (train, compare) with its account shown unless its `verbose` is 0."""
    signature = inspect.signature(work)

    @functools.wraps(work)
    def wrapper(*args, **kwargs) -> T:
        with _told(signature.bind_partial(*args, **kwargs).arguments.get("verbose")):
            return work(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def _told(verbose: int | None) -> Iterator[None]:
    if verbose == 0 or log.hasHandlers():  # asked for silence, or someone configured logging
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
