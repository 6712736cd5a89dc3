"""Errors that describe a user's mistake rather than a bug.

The command line prints a HashpaError's message and exits with status 2, without a traceback;
anything else is a bug and keeps its traceback.
"""


class HashpaError(Exception):
    """Bad input or configuration: the message says what, where, and how to fix it."""


class ModelMismatchError(HashpaError):
    """Queries were embedded by a different model from the one that built an index."""
