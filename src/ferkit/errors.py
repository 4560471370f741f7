"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class FerkitError(Exception):
    """A problem with the user's input or environment, explained in one line."""
