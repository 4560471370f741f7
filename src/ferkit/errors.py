"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class FerkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""


def missing_package(name: str) -> str:
    """The extra that installs a missing package, said the same way by the CLI and the Python API."""
    extra = "serve" if name in ("fastapi", "uvicorn", "multipart", "PIL") else "train"
    return f"this needs {name}, which is not installed: pip install 'ferkit[{extra}]'"
