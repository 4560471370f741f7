"""A run's or an evaluation's own account (the data loaded, the classes left out, how many epochs the
time limit lets fit, the lighter fallback network, the test score) for callers from Python as well
as the CLI. Apart from training, which imports Keras: `evaluate` on ONNX Runtime needs none.

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
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

log = logging.getLogger("ferkit")
T = TypeVar("T")


def tells_its_account(work: Callable[..., T]) -> Callable[..., T]:
    """`work` (train, compare, evaluate) with its account shown unless its `verbose` is 0."""
    signature = inspect.signature(work)

    @functools.wraps(work)
    def wrapper(*args, **kwargs) -> T:
        with _told(signature.bind_partial(*args, **kwargs).arguments.get("verbose")):
            return work(*args, **kwargs)
    return wrapper


# One handler shared by the calls running at once (threads of a notebook or a server), attached by the
# first and removed by the last: each had attached its own, every line printed twice, and the first
# to end removed the handler from under the others.
_lock = threading.Lock()
_handler: logging.Handler | None = None
_users = 0


@contextlib.contextmanager
def _told(verbose: int | None) -> Iterator[None]:
    global _handler, _users
    with _lock:
        # Silence asked for; logging set up; or a level set on ferkit's logger (setLevel(WARNING) alone)
        mine = verbose != 0 and (_handler is not None or (not log.hasHandlers() and log.level == logging.NOTSET))
        if mine:
            if _handler is None:
                _handler = logging.StreamHandler(sys.stderr)
                _handler.setFormatter(logging.Formatter("%(message)s"))
                log.addHandler(_handler)
                log.setLevel(logging.INFO)
            _users += 1
    try:
        yield
    finally:
        if mine:
            with _lock:
                _users -= 1
                if not _users:
                    log.removeHandler(_handler)
                    log.setLevel(logging.NOTSET)
                    _handler = None
