"""One base class for every error that is the user's input, not a bug.

The CLI catches :class:`SerEdgeError` and prints its one-line message with a non-zero exit;
anything else is a bug and keeps its traceback.
"""


class SerEdgeError(Exception):
    """Bad input at a boundary: a file, a model, a flag. The message is for the user."""
